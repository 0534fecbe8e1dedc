"""Operations: the command line, the invariant checker and the process supervisor.

The only code that composes the services. The shared package ``backbone`` (runtime, client SDK,
money, generated stubs) imports no service, and no service imports another or this package;
``tests/unit/test_layering.py`` holds both rules.
"""
