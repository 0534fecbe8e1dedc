"""Run commands as a reader would paste them: grpcurl (with `buf curl` standing in) and `buf curl` itself.

grpcurl is not a Python package; buf (from the dev extra) speaks gRPC with reflection too. The script
defines `buf` as a shell function that runs the installed buf with exactly the arguments it was given
and saves every answer as <n>-<Method>.json in the answers folder; `grpcurl` as a function that
translates its arguments (-plaintext, -H, -d, ADDRESS, SERVICE/METHOD) to such a `buf curl`; and
`api_key_of ACCOUNT`: the key a reader copies from that account's CreateAccount answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PRELUDE = r"""
set -euo pipefail
calls=0
buf() {
  [ "$1" = curl ] || { echo "the stand-in runs buf curl only, not buf $1" >&2; return 2; }
  local url=${!#} method out
  method=${url##*/} calls=$((calls + 1))
  out="$OUT/$calls-$method.json"
  if [ "$method" = StreamExecutions ]; then
    # A reader leaves this running; here it must stay open for a few seconds, not be refused.
    local code=0
    timeout 3 "$BUF" "$@" > "$out" || code=$?
    [ "$code" -eq 124 ] || { echo "StreamExecutions ended with $code" >&2; return 1; }
  else
    "$BUF" "$@" > "$out"
  fi
  cat "$out"
}
grpcurl() {
  local args=()
  while [ "$#" -gt 2 ]; do
    case "$1" in
      -plaintext) shift ;;
      -d) if [ "$2" = @ ]; then args+=(-d @-); else args+=(-d "$2"); fi; shift 2 ;;  # @: standard input
      -H) args+=("$1" "$2"); shift 2 ;;
      *) echo "grpcurl flag the stand-in does not know: $1" >&2; return 2 ;;
    esac
  done
  buf curl --protocol grpc --http2-prior-knowledge "${args[@]}" "http://$1/$2"
}
api_key_of() {
  local answer
  answer=$(grep -l "\"accountId\": \"$1\"" "$OUT"/*-CreateAccount.json)
  sed -n 's/.*"apiKey": "\(.*\)".*/\1/p' "$answer"
}
"""


@dataclass
class Answers:
    """What the pasted commands answered, in order."""

    folder: Path

    def of(self, method: str) -> list[dict[str, Any]]:
        paths = sorted(self.folder.glob(f"*-{method}.json"), key=lambda p: int(p.name.split("-", 1)[0]))
        return [json.loads(path.read_text()) for path in paths]

    def stream_of(self, method: str) -> list[list[dict[str, Any]]]:
        """Each streaming call's answers: the messages it printed, one JSON object after another."""
        paths = sorted(self.folder.glob(f"*-{method}.json"), key=lambda p: int(p.name.split("-", 1)[0]))
        calls = []
        for path in paths:
            text, messages, decoder, at = path.read_text(), [], json.JSONDecoder(), 0
            while text[at:].strip():
                at += len(text[at:]) - len(text[at:].lstrip())
                message, at = decoder.raw_decode(text, at)
                messages.append(message)
            calls.append(messages)
        return calls

    def methods(self) -> set[str]:
        return {path.name.split("-", 1)[1].removesuffix(".json") for path in self.folder.iterdir()}

    def api_key(self, account_id: str) -> str:
        for answer in self.of("CreateAccount"):
            if answer["accountId"] == account_id:
                return str(answer["apiKey"])
        raise AssertionError(f"no CreateAccount answer for {account_id}")


def substitute(text: str, old: str, new: str) -> str:
    """Replace `old`, which must be there: a reworded source must fail the test, not skip a step."""
    assert old in text, f"no longer contains {old!r}"
    return text.replace(old, new)


def banner_commands(banner: str) -> str:
    """The commands `backbone up` prints to paste: from its ADMIN= line to the line before "Then"."""
    lines = banner.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ADMIN="))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Then "))
    return "\n".join(lines[start:end]).strip() + "\n"


def run_pasted(commands: str, folder: Path) -> Answers:
    """Run `commands` with bash in `folder` (the reader's working directory); fail on any error."""
    buf = Path(sys.executable).parent / "buf"
    assert buf.exists(), "buf is missing: the dev extra installs it (buf-bin)"
    answers = folder / "answers"
    answers.mkdir(parents=True)
    script = folder / "pasted.sh"
    script.write_text(_PRELUDE + commands)
    result = subprocess.run(
        ["bash", str(script)],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "OUT": str(answers), "BUF": str(buf)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return Answers(answers)
