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

import casbin  # no stubs or py.typed
from casbin.model import Model

from secure_aiaas.names import (
    BUILTIN_ROLES,
    DOMAIN_CLASSES,
    GLOBAL_ROLES,
    OPERATOR_DOMAIN,
    ROLE_RE,
    SUBJECT_PREFIX,
    TENANT_RE,
    fold,
    subject_problem,
)

EFFECTS = ("allow", "deny")
# Casbin logs every request (subject names included) on "casbin.enforcer": never let that out.
_SILENT = logging.getLogger("secure_aiaas.policy.casbin")
_SILENT.disabled = True
_EFFECT_LINE = re.compile(r"^e\s*=.*$", re.MULTILINE)


@dataclass(frozen=True)
class PolicyLine:
    ptype: str  # "p", "g", or "role" (a custom role's declaration; never given to Casbin)
    fields: tuple[str, ...]
    source: str  # "policy.csv:12"


@dataclass(frozen=True)
class PolicySource:
    model_text: str
    lines: tuple[PolicyLine, ...]
    version: str
    files: tuple[str, ...]

    def roles(self) -> set[str]:
        """Every role a key may hold: the built-in ones and those the policy declares."""
        return _roles_of(self.lines)


def _roles_of(lines: tuple[PolicyLine, ...] | list[PolicyLine]) -> set[str]:
    declared = {ln.fields[0] for ln in lines if ln.ptype == "role"}
    return set(BUILTIN_ROLES) | declared


class PolicyValidationError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def policy_files(policy_dir: Path, model_file: str, policy_file: str) -> list[Path]:
    """The model file, the main policy file, then any other non-hidden ``*.csv`` (sorted).

    Hidden files (an editor's ``.policy.csv.swp``-style copies, ``.extra.csv``) never load:
    what is enforced is what a reviewer sees with ``ls``.
    """
    extra = sorted(
        p
        for p in policy_dir.glob("*.csv")
        if p.name != policy_file and not p.name.startswith(".") and p.is_file()
    )
    return [policy_dir / model_file, policy_dir / policy_file, *extra]


def _subject_field_problem(value: str, roles: set[str]) -> str | None:
    """A p-line's subject: ``*``, a known role, or ``subject:<name>``.

    A bare name that is no role is refused rather than read as a new role: a line written
    for one key holder (``p, alice, ...``) must not silently stop applying to her.
    """
    if value == "*":
        return None
    if value.startswith(SUBJECT_PREFIX):
        return subject_problem(value[len(SUBJECT_PREFIX) :], roles)
    if not ROLE_RE.match(value):
        return (
            f"{value!r} is neither a role (lowercase letters, digits, '-'), "
            "'subject:<name>' nor '*'"
        )
    if value not in roles:
        return (
            f"{value!r} is not a role: built-in roles are {', '.join(sorted(BUILTIN_ROLES))};"
            f" declare a custom one with 'role, {value}'; for one key holder write "
            f"'subject:{value}'"
        )
    return None


def _domain_field_problem(value: str) -> str | None:
    if value == "*" or value in DOMAIN_CLASSES or TENANT_RE.match(value):
        return None
    return (
        f"domain {value!r} is not a tenant name, a class "
        f"({', '.join(sorted(DOMAIN_CLASSES))}) or '*'"
    )


def _check_names(lines: list[PolicyLine], errors: list[str]) -> None:
    """Namespaces: subjects never collide with roles; global roles only for operators."""
    roles = _roles_of(lines)
    for line in lines:
        where = line.source
        if line.ptype == "role":
            problem = (
                None
                if ROLE_RE.match(line.fields[0])
                else f"{line.fields[0]!r} is not a role name (lowercase letters, digits, '-')"
            )
            if problem is None and fold(line.fields[0]) in {fold(r) for r in BUILTIN_ROLES}:
                problem = f"{line.fields[0]!r} is (or reads like) a built-in role"
        elif line.ptype == "p":
            sub, dom = line.fields[0], line.fields[1]
            problem = _subject_field_problem(sub, roles) or _domain_field_problem(dom)
            if problem is None and sub in GLOBAL_ROLES and dom != OPERATOR_DOMAIN:
                problem = (
                    f"global role {sub!r} may be granted only in domain "
                    f"{OPERATOR_DOMAIN!r}, not {dom!r}"
                )
        else:
            subject, role, tenant = line.fields
            problem = subject_problem(subject, roles)
            if problem is None and role not in roles:
                problem = f"{role!r} is not a role (declare a custom one with 'role, {role}')"
            if problem is None and not TENANT_RE.match(tenant):
                problem = f"a grant names one tenant, not {tenant!r}"
        if problem is not None:
            errors.append(f"{where}: {problem}")


def operator_grant_problems(source: PolicySource, operator_tenants: set[str]) -> list[str]:
    """Grants of a global role inside a customer tenant (``policy check`` with the registry).

    They could not take effect (global roles' lines match only ``tenant:operator``), but a
    reviewer would read them as if they did.
    """
    return [
        f"{ln.source}: global role {ln.fields[1]!r} granted in tenant {ln.fields[2]!r}, "
        "which is not an operator tenant"
        for ln in source.lines
        if ln.ptype == "g" and ln.fields[1] in GLOBAL_ROLES and ln.fields[2] not in operator_tenants
    ]


def _parse_csv(name: str, content: str, errors: list[str]) -> list[PolicyLine]:
    lines: list[PolicyLine] = []
    for number, raw in enumerate(content.splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{name}:{number}"
        fields = tuple(part.strip() for part in text.split(","))
        ptype, rest = fields[0], fields[1:]
        if ptype == "p":
            if len(rest) != 5:
                errors.append(
                    f"{where}: a 'p' line needs 5 fields (sub, dom, obj, act, eft), got {len(rest)}"
                )
                continue
            if rest[4] not in EFFECTS:
                errors.append(f"{where}: effect must be 'allow' or 'deny', got {rest[4]!r}")
                continue
        elif ptype == "g":
            if len(rest) != 3:
                errors.append(
                    f"{where}: a 'g' line needs 3 fields (subject, role, tenant), got {len(rest)}"
                )
                continue
        elif ptype == "role":
            if len(rest) != 1:
                errors.append(
                    f"{where}: a 'role' line declares one role name, got {len(rest)} fields"
                )
                continue
        else:
            errors.append(f"{where}: unknown line type {ptype!r} (expected 'p', 'g' or 'role')")
            continue
        if any(not field for field in rest):
            errors.append(f"{where}: empty field")
            continue
        lines.append(PolicyLine(ptype=ptype, fields=rest, source=where))
    return lines


def read_policy(policy_dir: Path, model_file: str, policy_file: str) -> PolicySource:
    """Read the policy directory and validate it (see `parse_policy`).

    Each file is read once: the version is the digest of exactly the bytes parsed, so an
    edit racing the read can never produce a version that names other content.
    """
    return parse_policy(
        read_policy_files(policy_dir, model_file, policy_file), model_file, policy_file
    )


def read_policy_files(policy_dir: Path, model_file: str, policy_file: str) -> dict[str, bytes]:
    """The policy files' bytes by name, each read once (what `parse_policy` takes).

    Raises:
        PolicyValidationError: a file is missing or unreadable.
    """
    contents: dict[str, bytes] = {}
    errors: list[str] = []
    for path in policy_files(policy_dir, model_file, policy_file):
        try:
            contents[path.name] = path.read_bytes()
        except FileNotFoundError:
            errors.append(f"{path.name}:0: file missing")
        except OSError as exc:
            errors.append(f"{path.name}:0: cannot be read ({type(exc).__name__})")
    if errors:
        raise PolicyValidationError(errors)
    return contents


def parse_policy(contents: dict[str, bytes], model_file: str, policy_file: str) -> PolicySource:
    """Validate a policy given as file name → bytes (the model, the main file, extra CSVs).

    Raises:
        PolicyValidationError: listing every problem found, as ``file:line: reason``.
    """
    errors: list[str] = []
    texts: dict[str, str] = {}
    for name in (model_file, policy_file):
        if name not in contents:
            errors.append(f"{name}:0: file missing")
    for name, raw in contents.items():
        try:
            texts[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(f"{name}:0: not UTF-8 text")
    if errors:
        raise PolicyValidationError(errors)
    model_text = texts[model_file]
    try:
        model = Model()
        model.load_model_from_text(model_text)
        for section in ("r", "p", "e", "m"):
            if section not in model.model:
                errors.append(f"{model_file}:0: section [{section}] missing")
    except Exception as exc:  # casbin raises bare errors of many kinds on a bad model
        errors.append(f"{model_file}:0: invalid model: {type(exc).__name__}: {exc}")
    lines: list[PolicyLine] = []
    seen: dict[tuple[str, ...], str] = {}
    csv_names = [policy_file, *sorted(n for n in texts if n not in (model_file, policy_file))]
    for name in csv_names:
        for line in _parse_csv(name, texts[name], errors):
            key = (line.ptype, *line.fields)
            if key in seen:
                errors.append(f"{line.source}: duplicate of {seen[key]}")
                continue
            seen[key] = line.source
            lines.append(line)
    _check_names(lines, errors)
    if errors:
        raise PolicyValidationError(errors)
    names = [model_file, *csv_names]
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + contents[name] + b"\0")
    source = PolicySource(
        model_text=model_text,
        lines=tuple(lines),
        version=digest.hexdigest()[:12],
        files=tuple(names),
    )
    _dry_run(source, model_file)
    return source


def _dry_run(source: PolicySource, model_file: str) -> None:
    """Evaluate the matcher once over every line: a matcher that cannot be evaluated (an
    unknown function, a bad expression) is refused here rather than at the first request."""
    request = (
        SUBJECT_PREFIX + "policy-check",
        "user",
        "policy-check",
        "trust:trusted",
        "tenant:customer",
        "identity",
        "read",
    )
    try:
        enforcer = build_enforcer(source)
        enforcer.enforce_ex(*request)
    except Exception as exc:  # casbin/simpleeval raise many kinds
        raise PolicyValidationError(
            [f"{model_file}:0: the matcher cannot be evaluated: {type(exc).__name__}: {exc}"]
        ) from exc


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
    p_rules = [list(line.fields) for line in lines if line.ptype == "p"]  # "role": ours only
    # Subjects enter the enforcer namespaced, as requests carry them (see model.conf).
    g_rules = [
        [SUBJECT_PREFIX + line.fields[0], *line.fields[1:]] for line in lines if line.ptype == "g"
    ]
    if p_rules:
        enforcer.add_policies(p_rules)
    if g_rules:
        enforcer.add_grouping_policies(g_rules)
    return enforcer
