"""atheris target: the drone message contract on arbitrary bytes.

The contract is the border every drone message crosses, so libFuzzer's coverage-guided
mutation (seeded from ``fuzz/seeds/contract``) looks for any input that breaks its promise:
:func:`parse_message` returns a :class:`DroneMessage` or an :class:`InvalidMessage` with
a known reason, never raises, and a message it accepts encodes to bytes it accepts again,
unchanged. Run it through ``fuzz/run.py``; alone: ``python fuzz/contract_target.py -help=1``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from transforms import contract
    from transforms.contract import DroneMessage, InvalidMessage, encode_message, parse_message

REASONS = frozenset(value for name, value in vars(contract.Reason).items() if name.isupper())


class BrokenPromise(AssertionError):
    """The contract returned something it promises never to."""


def test_one_input(data: bytes) -> None:
    """One libFuzzer input: any exception, or a BrokenPromise, is a finding."""
    result = parse_message(data)
    if isinstance(result, InvalidMessage):
        if result.reason not in REASONS:
            raise BrokenPromise(f"unknown reason {result.reason!r}")
        return
    if not isinstance(result, DroneMessage):
        raise BrokenPromise(f"parse_message returned {type(result).__name__}")
    encoded = encode_message(result)
    again = parse_message(encoded)
    if not isinstance(again, DroneMessage) or encode_message(again) != encoded:
        raise BrokenPromise(f"an accepted message does not survive encoding: {again!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
