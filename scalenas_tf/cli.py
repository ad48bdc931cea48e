"""The entry point of the bin/ programs: flags parsed, bad input reported in one line, never a traceback.

`run(main, program)` replaces `absl.app.run(main)`. Flag errors (an unknown flag, a bad config
variant, an unknown `--config.x.y` override, a missing required flag) and the errors the library
raises for bad input (`ValueError` and its subclasses: config, arch, workdir and search-log errors;
`OSError`; ...) print `<program>: error: <one line>` on standard error and exit 1. `ParityError`
exits 2. Anything else is a bug and keeps its traceback. This is the only module that exits the
process; the library itself never does.
"""

from __future__ import annotations

import pickle
import sys

from absl import app
from absl import flags

# Raised by the library for input it refuses, or by Python's readers for malformed files.
INPUT_ERRORS = (ValueError, OSError, RecursionError, pickle.UnpicklingError, EOFError)


def one_line(error: BaseException) -> str:
    """The message of `error` on one line: the last meaningful line of a multi-line message (absl
    embeds a config file's traceback in its flag error), whitespace collapsed."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        # absl's config-flag errors end with the exception line of the config file (e.g.
        # "ValueError: Config variant must be ..."), followed by a hint about --helpshort.
        meaningful = [line for line in lines if not line.startswith("Pass --help")]
        errors = [line for line in meaningful if line.split(":", 1)[0].endswith(("Error", "Exception"))]
        causes = [line for line in meaningful if "[Errno" in line]
        if errors:
            lines = [errors[-1]]
        elif causes:
            lines = [f"{meaningful[0]} ({causes[-1]})"]
        else:
            lines = [meaningful[0]]
    message = " ".join(lines[0].split())
    if isinstance(error, (KeyError, AttributeError)) and " " not in message:  # a bare field name
        message = f"unknown config field {message.strip(chr(34))} (from a --config.<field> override)"
    return message


def _parse_flags(program: str, argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(program, f"bad flags: {one_line(e)}")
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        # ml_collections raises these for an override of a field the config lacks, or of a wrong type.
        _fail(program, f"bad flags: {one_line(e)}")
    except Exception as e:  # noqa: BLE001 - raised by the --config file itself (e.g. a SyntaxError): user input
        _fail(program, f"bad flags: {type(e).__name__}: {one_line(e)}")


def _fail(program: str, message: str, code: int = 1):
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(code)


def run(main, program: str, required=()):
    """Runs `main(argv)` as an absl program, reporting bad flags and bad input in one line.

    Args:
        main: the program's main; its return value is the exit status.
        program: the name in error messages (e.g. `"export.py"`).
        required: flag names that must be given.
    """
    if required:
        flags.mark_flags_as_required(list(required))
    from scalenas_tf.export.parity import ParityError

    def guarded(argv):
        try:
            return main(argv)
        except app.UsageError as e:  # e.g. unexpected positional arguments; absl would print the whole usage
            _fail(program, f"bad arguments: {one_line(e)}")
        except ParityError as e:
            _fail(program, f"parity failed: {one_line(e)}", 2)
        except INPUT_ERRORS as e:
            _fail(program, one_line(e))

    # absl parses the flags once (config_flags defines its override flags while parsing, so a second
    # parse would fail); our parser turns flag errors into one line.
    app.run(guarded, flags_parser=lambda argv: _parse_flags(program, argv))
