"""``koemorph-data`` command line (also ``python -m koemorph_data``).

Each subcommand lives in ``koemorph_data.commands.<module>`` with ``configure(parser)`` and
``run(args) -> int``. Errors a user can fix are printed as one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import DataFormatError, UserError

# name -> (module under koemorph_data.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "stream the bundled sample dataset through a DataLoader (batch 4, 2 workers)"),
    "prepare": ("prepare", "decode a dataset once into the memory-mapped prepared cache (parallel)"),
    "manifest": ("manifest", "write the take manifest that lets datasets start without opening any take"),
    "inspect": ("inspect", "check a dataset: per-take rates, frame counts, sync mismatches, errors (--json)"),
    "plot": ("plot", "plot a take's loudness against jawOpen and the lag that maximises their correlation"),
    "import-livelink": ("import_livelink", "convert a Live Link Face CSV + audio into a 30 fps take"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="koemorph-data", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = importlib.import_module(f"koemorph_data.commands.{module}")
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        command.configure(sub_parser)
        sub_parser.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="koemorph-data: %(levelname)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"koemorph-data {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except (DataFormatError, ValueError, OSError) as exc:
        print(f"koemorph-data {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
