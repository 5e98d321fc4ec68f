"""Read and validate the policy directory before Casbin sees it.

Casbin's own file adapter is lenient (a line with a missing field just never matches); an
admin deserves ``file:line: reason``. So lines are parsed here, checked, and handed to the
enforcer with their origin kept for ``policy explain``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import casbin
from casbin.model import Model

EFFECTS = ("allow", "deny")
# Casbin logs every request (subject names included) on "casbin.enforcer": never let that out.
_SILENT = logging.getLogger("secure_aiaas.policy.casbin")
_SILENT.disabled = True
_EFFECT_LINE = re.compile(r"^e\s*=.*$", re.MULTILINE)


@dataclass(frozen=True)
class PolicyLine:
    ptype: str  # "p" or "g"
    fields: tuple[str, ...]
    source: str  # "policy.csv:12"


@dataclass(frozen=True)
class PolicySource:
    model_text: str
    lines: tuple[PolicyLine, ...]
    version: str
    files: tuple[str, ...]


class PolicyValidationError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def policy_files(policy_dir: Path, model_file: str, policy_file: str) -> list[Path]:
    """The model file, the main policy file, then any other ``*.csv`` (sorted)."""
    extra = sorted(p for p in policy_dir.glob("*.csv") if p.name != policy_file)
    return [policy_dir / model_file, policy_dir / policy_file, *extra]


def _parse_csv(path: Path, errors: list[str]) -> list[PolicyLine]:
    lines: list[PolicyLine] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        fields = tuple(part.strip() for part in text.split(","))
        ptype, rest = fields[0], fields[1:]
        if ptype == "p":
            if len(rest) != 5:
                errors.append(f"{where}: a 'p' line needs 5 fields (sub, dom, obj, act, eft), "
                              f"got {len(rest)}")
                continue
            if rest[4] not in EFFECTS:
                errors.append(f"{where}: effect must be 'allow' or 'deny', got {rest[4]!r}")
                continue
        elif ptype == "g":
            if len(rest) != 3:
                errors.append(f"{where}: a 'g' line needs 3 fields (subject, role, tenant), "
                              f"got {len(rest)}")
                continue
        else:
            errors.append(f"{where}: unknown line type {ptype!r} (expected 'p' or 'g')")
            continue
        if any(not field for field in rest):
            errors.append(f"{where}: empty field")
            continue
        lines.append(PolicyLine(ptype=ptype, fields=rest, source=where))
    return lines


def read_policy(policy_dir: Path, model_file: str, policy_file: str) -> PolicySource:
    """Parse and validate; raises PolicyValidationError listing every problem found."""
    errors: list[str] = []
    files = policy_files(policy_dir, model_file, policy_file)
    for path in files[:2]:
        if not path.is_file():
            errors.append(f"{path.name}:0: file missing")
    if errors:
        raise PolicyValidationError(errors)
    model_text = files[0].read_text(encoding="utf-8")
    try:
        model = Model()
        model.load_model_from_text(model_text)
        for section in ("r", "p", "e", "m"):
            if section not in model.model:
                errors.append(f"{files[0].name}:0: section [{section}] missing")
    except Exception as exc:  # casbin raises bare errors of many kinds on a bad model
        errors.append(f"{files[0].name}:0: invalid model: {type(exc).__name__}: {exc}")
    lines: list[PolicyLine] = []
    seen: dict[tuple[str, ...], str] = {}
    for path in files[1:]:
        for line in _parse_csv(path, errors):
            key = (line.ptype, *line.fields)
            if key in seen:
                errors.append(f"{line.source}: duplicate of {seen[key]}")
                continue
            seen[key] = line.source
            lines.append(line)
    if errors:
        raise PolicyValidationError(errors)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return PolicySource(model_text=model_text, lines=tuple(lines),
                        version=digest.hexdigest()[:12], files=tuple(p.name for p in files))


def _silence_casbin() -> None:
    # Casbin logs its model and every request (subject names included) through "casbin.*"
    # loggers. Operators' logs must not carry either.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("casbin")]:
        logging.getLogger(name).disabled = True
    logging.getLogger("casbin").disabled = True


def build_enforcer(source: PolicySource, *, explain_allows: bool = False) -> casbin.Enforcer:
    """An enforcer over the validated lines.

    With ``explain_allows``, the enforcer holds only the allow lines under an allow-override
    effect: Casbin then reports the first allow line that matched, which the deny-override
    enforcer does not (it only names the deny that decided).
    """
    model_text = source.model_text
    lines = source.lines
    if explain_allows:
        model_text = _EFFECT_LINE.sub("e = some(where (p.eft == allow))", model_text)
        lines = tuple(ln for ln in lines if ln.ptype == "g" or ln.fields[-1] == "allow")
    model = casbin.Enforcer.new_model(text=model_text)
    enforcer = casbin.Enforcer(model)
    _silence_casbin()
    enforcer.logger = _SILENT
    p_rules = [list(line.fields) for line in lines if line.ptype == "p"]
    g_rules = [list(line.fields) for line in lines if line.ptype == "g"]
    if p_rules:
        enforcer.add_policies(p_rules)
    if g_rules:
        enforcer.add_grouping_policies(g_rules)
    return enforcer
