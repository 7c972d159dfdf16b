"""What a failed rank may record: the exception's type and where in MedCore it was raised, never a library's message.

A library exception can quote its input (a KeyError names the missing label, a ValueError the value it could not
parse), and status.json, train.log and the Runs page must never hold patient text. MedcoreError messages are kept:
they are written to name files, rows and columns only. A failure whose cause is known gets a hint fit for it
(explain_failure): a run past its model's limits is told which setting to change, from its spec and the model's
config.json, instead of to resume into the same error.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.train.spec import RunSpec
from medcore.train.validate import head_size_of, limit_problems
from medcore.workspace import Workspace

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding medcore/
WITHHELD = "(message withheld: a library's message may quote patient data)"
GENERIC_HINT = (
    "See the traceback in train.log (`medcore runs logs RUN_ID --tail 50`); resume from the last checkpoint."
)
# How a run that asks more of its model than the model has dies: a sequence longer than the position table (BERT's
# "expanded size of the tensor (771) must match the existing size (512)"), a token id past the embedding matrix
# ("index out of range in self"; on a GPU, a device-side assert), a trained head of another size. Only matched to
# pick the hint, which then comes from the spec and the model's config.json: the message itself is never copied.
LIMIT_SYMPTOMS = re.compile(
    r"The expanded size of the tensor \(\d+\) must match the existing size|index out of range in self"
    r"|device-side assert triggered|ignore_mismatched_sizes|size mismatch for"
)
# Fixed phrases of infrastructure failures, repeated (never the message around them) so that medcore.jobs.diagnose
# still finds the cause in train.log: out of memory, a full or read-only disk, a lost peer, a taken port.
KNOWN_PHRASES = re.compile(
    r"CUDA out of memory|DefaultCPUAllocator: can't allocate memory|No space left on device|Disk quota exceeded"
    r"|Read-only file system|Connection closed by peer|Connection reset by peer|Address already in use"
)


def medcore_location(exc: BaseException) -> str | None:
    """`medcore/<file>.py:<line>` of the innermost MedCore frame of `exc`'s traceback (where the library was called)."""
    package = PACKAGE_ROOT / "medcore"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.is_relative_to(package):
            return f"{path.relative_to(PACKAGE_ROOT)}:{frame.lineno}"
    return None


def describe_exception(exc: BaseException) -> str:
    """One PHI-free line: a MedcoreError's own message, else the exception's type and its MedCore location."""
    if isinstance(exc, MedcoreError):
        return str(exc)
    where = medcore_location(exc)
    what = type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        what += f" ({exc.strerror})"  # system text, e.g. "No space left on device"; the file name is left out
    return f"{what} raised at {where}" if where else f"{what} raised outside MedCore"


def safe_message(exc: BaseException) -> str:
    """What may be printed of `exc`'s message: all of a MedcoreError's; an OSError's errno and system text (not the
    file name); known infrastructure phrases of anything else."""
    if isinstance(exc, MedcoreError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    phrases = sorted(set(KNOWN_PHRASES.findall(str(exc))))
    return f"{WITHHELD[:-1]}; it mentions: {', '.join(phrases)})" if phrases else WITHHELD


def _qualified(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"


def format_traceback(exc: BaseException) -> str:
    """The traceback Python would print (chained exceptions included) with every library message withheld."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current, link = exc, ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of the following exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception, another exception occurred:"
        else:
            current = None
    parts = []
    for item, link_to_next in reversed(chain):  # oldest first, as Python prints them
        frames = "".join(traceback.format_tb(item.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{_qualified(item)}: {safe_message(item)}\n")
        if link_to_next:
            parts.append(f"\n{link_to_next}\n\n")
    return "".join(parts)


def exceeded_limits(exc: BaseException, spec_data: dict, ws: Workspace) -> list[str]:
    """The model limits `spec_data` exceeds, when `exc` is how exceeding one shows; else [] (not this kind of failure).

    The limits and the settings come from config.json and the spec (medcore.train.validate.limit_problems), so the
    answer names max_length and the model's limit without quoting the exception.
    """
    if isinstance(exc, MedcoreError) or not LIMIT_SYMPTOMS.search(str(exc)):
        return []
    try:
        spec = RunSpec.model_validate(spec_data)
        return limit_problems(spec, ws, head_size_of(spec, ws))
    except Exception:  # noqa: BLE001 - explaining a failure must not raise a second one; the generic hint stands
        return []


def explain_failure(exc: BaseException, spec_data: dict, ws: Workspace) -> tuple[str, str]:
    """(error, hint) a rank records when training raised `exc`: PHI-free, and a hint that fits the cause.

    A run that exceeds its model's limits gets the setting to change and is told not to resume (it would fail the
    same way); anything else gets the traceback's place and the generic advice.
    """
    what = describe_exception(exc)
    exceeded = exceeded_limits(exc, spec_data, ws)
    if not exceeded:
        return what, GENERIC_HINT
    fixes = "; ".join(str(MedcoreError(problem)) for problem in exceeded)  # {option:...} in Python's words
    return (
        f"{what}: the run asks more of its model than the model can take",
        f"Past the model's limits: {fixes}. Launch a new run with that change: resuming this one would fail the same way.",
    )
