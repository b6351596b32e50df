"""The pipelines' command line: every flag explained by ``--help``, every unknown flag refused.

Beam parses pipeline flags itself, silently dropping (with a logged warning) any it does
not know, and its ``--help`` knows none of our flags. :func:`parse_pipeline_args` runs
first: it checks the flags against every flag DroneCop and Beam define (all
``PipelineOptions`` subclasses imported so far, as Beam itself collects them), answers
``--help`` with DroneCop's option groups and ``--help_beam`` with Beam's own list, and only
then hands the flags to Beam.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from typing import Mapping, NoReturn, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipelines.options import KAFKA_PIPELINE_SHARED_FLAGS, RunModeOptions
from runners.presets import given_flags, local_options
from transforms.object_store import use_options

EXIT_USAGE = 2
# What the stream pipelines' runs end with (``pipelines.modes.main``).
KAFKA_PIPELINE_EXIT_CODES: Mapping[int, str] = {
    0: "done (a drain finished, or --follow stopped by Ctrl-C)",
    2: "bad flags, no broker, a refused login, no Prism, or a drain that could not complete",
    130: "interrupted: --streaming stopped by Ctrl-C, or a drain whose offsets were not committed",
}
HELP_BEAM = "--help_beam"


class _OneLineErrors(_BeamArgumentParser):
    """Beam's parser, but a bad value is one line (``name: message``) and exit code 2, not usage plus a message."""

    def __init__(self, name: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.name = name

    def error(self, message: str) -> NoReturn:
        refuse(self.name, message)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The description and epilog as written; each flag's default after its help, unless it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def refuse(prog: str, message: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    print(f"{prog}: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def parse_pipeline_args(
    argv: Sequence[str],
    prog: str,
    description: str,
    option_classes: Sequence[type[PipelineOptions]],
    shared_flags: Mapping[str, str | None] = KAFKA_PIPELINE_SHARED_FLAGS,
    exit_codes: Mapping[int, str] = KAFKA_PIPELINE_EXIT_CODES,
    shuffles: bool = False,
    output_default: str | None = None,
) -> PipelineOptions:
    """The options of ``python -m pipelines.<prog> ARGV``, once every flag is known, with the runner's preset.

    ``option_classes`` are this pipeline's DroneCop option groups, shown whole by
    ``--help``. ``shared_flags`` are flags another group owns (Beam's ``--runner``, the
    stream pipelines' ``--output``) that this pipeline uses too, each with what it means
    here, or None to show its owner's help. ``--help`` and ``--help_beam`` print and exit 0;
    a flag no one defines, or a bad value, is one line and exit 2. ``shuffles``: the
    pipeline groups by key, which changes the local preset (:func:`runners.presets.local_options`).
    ``output_default``: this pipeline's own default for the shared ``--output``, whose owner's
    default (the stream pipelines' lake) is never right for a report or a model.
    """
    every_group = list({str(cls): cls for cls in PipelineOptions.__subclasses__()}.values())
    parser = flags_parser(prog, every_group)
    beam_help = flags_parser(prog, [cls for cls in every_group if cls.__module__.startswith("apache_beam.")]).format_help()
    help_text = pipeline_help(prog, description, option_classes, parser, shared_flags, exit_codes)
    parser.add_argument("-h", "--help", action=_PrintAndExit, text=help_text, help="show this help and exit")
    parser.add_argument(HELP_BEAM, action=_PrintAndExit, text=beam_help, help="list Beam's own flags and exit")
    _, unknown = parser.parse_known_args(list(argv))
    if unknown:
        refuse(prog, unknown_flag_message(unknown[0], parser))
    options = local_options(argv, shuffles)
    if output_default is not None and "output" not in given_flags(argv):
        options.view_as(RunModeOptions).output = output_default
    use_options(options)  # what the job reads before its pipeline exists goes through the same filesystems
    return options


def flags_parser(prog: str, option_classes: Sequence[type[PipelineOptions]]) -> _OneLineErrors:
    """A parser of the flags ``option_classes`` define, built as Beam builds its own."""
    parser = _OneLineErrors(prog, prog=command(prog), allow_abbrev=False, add_help=False)
    for cls in option_classes:
        cls._add_argparse_args(parser)  # noqa: SLF001 — Beam's own hook, called as Beam calls it
    return parser


def unknown_flag_message(argument: str, parser: argparse.ArgumentParser) -> str:
    """What is wrong with the first argument no one defines, and the closest known flag."""
    if not argument.startswith("-"):
        return f"unexpected argument {argument!r} (every value follows its flag: --flag=value)"
    name = argument.split("=", 1)[0]
    known = [option for action in parser._actions for option in action.option_strings]  # noqa: SLF001
    closest = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {closest[0]}?" if closest else "see --help"
    return f"unknown flag {name} ({hint})"


class _PrintAndExit(argparse.Action):
    """A flag that prints ``text`` and ends the process with exit code 0."""

    def __init__(self, option_strings: list[str], dest: str, text: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.text = text

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None
    ) -> NoReturn:
        sys.stdout.write(self.text)
        sys.stdout.flush()
        raise SystemExit(0)


def pipeline_help(
    prog: str,
    description: str,
    option_classes: Sequence[type[PipelineOptions]],
    known: argparse.ArgumentParser,
    shared_flags: Mapping[str, str | None],
    exit_codes: Mapping[int, str],
) -> str:
    """``--help``: each DroneCop group with its flags, help and defaults; the shared flags; exit codes."""
    codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in sorted(exit_codes.items()))
    epilog = (
        f"exit codes:\n{codes}\n\nBeam's own flags (runners, workers, Dataflow, Flink, …) are accepted too: "
        f"{command(prog)} {HELP_BEAM} lists them."
    )
    parser = argparse.ArgumentParser(
        prog=command(prog), description=description, epilog=epilog, formatter_class=_HelpFormatter, add_help=False
    )
    general = parser.add_argument_group("help")
    general.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    general.add_argument(HELP_BEAM, action="store_true", help="list Beam's own flags and exit")
    for cls in option_classes:
        cls._add_argparse_args(parser.add_argument_group(cls.__name__, first_line(cls.__doc__)))  # noqa: SLF001
    if shared_flags:
        shared = parser.add_argument_group("shared flags", "Flags this pipeline shares with Beam or the other pipelines.")
        for flag, meaning in shared_flags.items():
            shared._add_action(shared_action(known, flag, meaning))  # noqa: SLF001 — an action shown, not parsed
    return parser.format_help()


def shared_action(parser: argparse.ArgumentParser, flag: str, meaning: str | None) -> argparse.Action:
    """The action that defines ``flag``, with ``meaning`` as its help when given."""
    owner = next(action for action in parser._actions if flag in action.option_strings)  # noqa: SLF001
    shown = copy.copy(owner)
    if meaning is not None:
        shown.help, shown.default = meaning, None
    return shown


def command(prog: str) -> str:
    """How the pipeline named ``prog`` is started."""
    return f"python -m pipelines.{prog}"


def first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def one_line(error: BaseException) -> str:
    """An error as one line for the terminal: its type and the last line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"
