"""Privacy profiles from ``policies/privacy.yaml``: load, validate (file:line), hot-reload.

Validation walks the YAML node tree so every message points at the line an admin must fix.
A ``ProfileStore`` keeps the last good version when an edit does not validate: a typo in the
file never turns scrubbing off.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from secure_aiaas.privacy.operators import OPERATORS

KNOWN_ENTITIES = frozenset(
    {
        "PERSON",
        "LOCATION",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
        "DATE_OF_BIRTH",
        "NRP",
        "ORGANIZATION",
        "DATE_TIME",
    }
)
_ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
TIERS = ("accurate", "fast")
_PROFILE_KEYS = {
    "tier",
    "restore_answers",
    "entities",
    "operator",
    "operators",
    "mask_char",
    "allow_list",
    "deny_list",
    "recognizers",
}
_RECOGNIZER_KEYS = {"name", "entity", "patterns", "context"}


@dataclass(frozen=True)
class PatternSpec:
    """One regex of a custom recognizer."""

    name: str
    regex: str
    score: float


@dataclass(frozen=True)
class RecognizerSpec:
    """A custom pattern recognizer declared by an admin."""

    name: str
    entity: str
    patterns: tuple[PatternSpec, ...]
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """What to detect (entity → score threshold) and how to transform it."""

    name: str
    thresholds: dict[str, float]
    # accurate: rules + spaCy + the PII model (default); fast: rules + spaCy only.
    tier: str = "accurate"
    operator: str = "placeholder"
    operators: dict[str, str] = field(default_factory=dict)
    mask_char: str = "*"
    allow_list: tuple[str, ...] = ()
    deny_list: dict[str, tuple[str, ...]] = field(default_factory=dict)
    recognizers: tuple[RecognizerSpec, ...] = ()
    # Chat: put the original values back where a model's answer names a placeholder (for
    # the tenant that sent them, before the answer leaves the service).
    restore_answers: bool = False

    def operator_for(self, entity_type: str) -> str:
        """The operator applied to one entity type."""
        return self.operators.get(entity_type, self.operator)

    @property
    def strict(self) -> bool:
        """Nothing scrubbed ever comes back: no restored answers, no reversible operator.
        Sensitive tenants may use chat models only under such a profile."""
        reversible = {self.operator, *self.operators.values()} & {"encrypt"}
        return not self.restore_answers and not reversible


@dataclass(frozen=True)
class PrivacyPolicy:
    """All profiles and which (tenant, model) pairs use which profile."""

    profiles: dict[str, Profile]
    assignments: tuple[tuple[str, str, str], ...]  # (tenant, model, profile); "*" matches any

    def select(self, tenant: str, model: str | None = None) -> Profile:
        """Most specific assignment wins: tenant+model, tenant, model, then the ``*``/``*`` default."""
        ranked = sorted(
            ((t != "*") * 2 + (m != "*"), p)
            for t, m, p in self.assignments
            if t in ("*", tenant) and m in ("*", model or "*")
        )
        if not ranked:
            raise LookupError("no privacy profile assigned")
        return self.profiles[ranked[-1][1]]


def validate_privacy_file(path: str | os.PathLike[str]) -> list[str]:
    """Return ``file:line: reason`` messages; an empty list means the file is valid."""
    p = Path(path)
    try:
        root = yaml.compose(p.read_text(encoding="utf-8"))
    except OSError:
        return [f"{p}:0: cannot read file"]
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        return [f"{p}:{line}: invalid YAML: {exc.problem}"]
    errors: list[str] = []
    _Validator(str(p), errors).root(root)
    return errors


def load_policy(path: str | os.PathLike[str]) -> PrivacyPolicy:
    """Load a privacy file; raises ``ValueError`` listing the problems when invalid."""
    errors = validate_privacy_file(path)
    if errors:
        raise ValueError("\n".join(errors))
    return _build(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


class ProfileStore:
    """The current policy, reloaded when the file changes; an invalid edit keeps the last good."""

    def __init__(self, path: str | os.PathLike[str], *, check_every_s: float = 0.25) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._policy = load_policy(self.path)  # startup: an invalid file refuses to start
        self._mtime = self._stat()
        self.last_errors: list[str] = []
        # `maybe_reload` runs on every scrubbed request: the file is looked at no more often
        # than this (a stat cost ~7 % of an embedding request's event-loop time).
        self._check_every_s = check_every_s
        self._checked_at = time.monotonic()

    @property
    def policy(self) -> PrivacyPolicy:
        """The policy in force."""
        return self._policy

    def reload(self) -> list[str]:
        """Reload now; return the validation errors (the old policy stays when there are any)."""
        with self._lock:
            self._mtime = self._stat()
            errors = validate_privacy_file(self.path)
            if not errors:
                self._policy = _build(yaml.safe_load(self.path.read_text(encoding="utf-8")))
            self.last_errors = errors
            return errors

    def maybe_reload(self) -> list[str]:
        """Reload if the file's mtime changed since the last load (at most one ``stat``
        every ``check_every_s``: an edit takes effect within that)."""
        now = time.monotonic()
        if now - self._checked_at < self._check_every_s:
            return []
        self._checked_at = now
        if self._stat() != self._mtime:
            return self.reload()
        return []

    def _stat(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return -1


def _build(doc: dict[str, Any]) -> PrivacyPolicy:
    profiles: dict[str, Profile] = {}
    for name, spec in doc["profiles"].items():
        entities = spec["entities"]
        recognizers = tuple(
            RecognizerSpec(
                r["name"],
                r["entity"],
                tuple(
                    PatternSpec(pt.get("name", r["name"]), pt["regex"], float(pt.get("score", 0.6)))
                    for pt in r["patterns"]
                ),
                tuple(r.get("context") or ()),
            )
            for r in spec.get("recognizers") or ()
        )
        profiles[name] = Profile(
            name=name,
            thresholds={e: float(t) for e, t in entities.items()},
            tier=spec.get("tier", "accurate"),
            operator=spec.get("operator", "placeholder"),
            operators=dict(spec.get("operators") or {}),
            mask_char=spec.get("mask_char", "*"),
            allow_list=tuple(spec.get("allow_list") or ()),
            deny_list={e: tuple(v) for e, v in (spec.get("deny_list") or {}).items()},
            recognizers=recognizers,
            restore_answers=bool(spec.get("restore_answers", False)),
        )
    assignments = tuple(
        (a.get("tenant", "*"), a.get("model", "*"), a["profile"]) for a in doc["assignments"]
    )
    return PrivacyPolicy(profiles, assignments)


class _Validator:
    """Walks composed YAML nodes, appending ``file:line: reason`` messages."""

    def __init__(self, filename: str, errors: list[str]) -> None:
        self.filename, self.errors = filename, errors

    def err(self, node: yaml.Node, reason: str) -> None:
        self.errors.append(f"{self.filename}:{node.start_mark.line + 1}: {reason}")

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.err(node, f"{what} must be a mapping")
            return {}
        return {str(k.value): (k, v) for k, v in node.value}

    def seq(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.err(node, f"{what} must be a list")
            return []
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.err(node, f"{what} must be a single value")
            return None
        return str(node.value)

    def root(self, root: yaml.Node | None) -> None:
        if root is None:
            self.errors.append(f"{self.filename}:1: empty file")
            return
        top = self.mapping(root, "the file")
        for key in ("version", "profiles", "assignments"):
            if key not in top and isinstance(root, yaml.MappingNode):
                self.err(root, f"missing top-level key '{key}'")
        for key, (knode, _) in top.items():
            if key not in ("version", "profiles", "assignments"):
                self.err(knode, f"unknown top-level key '{key}'")
        if "version" in top and self.scalar(top["version"][1], "version") != "1":
            self.err(top["version"][1], "version must be 1")
        names: set[str] = set()
        if "profiles" in top:
            for name, (_knode, pnode) in self.mapping(top["profiles"][1], "profiles").items():
                names.add(name)
                self.profile(name, pnode)
        if "assignments" in top:
            has_default = False
            for anode in self.seq(top["assignments"][1], "assignments"):
                a = self.mapping(anode, "an assignment")
                for key, (knode, _) in a.items():
                    if key not in ("tenant", "model", "profile"):
                        self.err(knode, f"unknown assignment key '{key}'")
                if "profile" not in a:
                    self.err(anode, "assignment needs a 'profile'")
                elif self.scalar(a["profile"][1], "profile") not in names:
                    self.err(a["profile"][1], f"unknown profile '{a['profile'][1].value}'")
                tenant = a["tenant"][1].value if "tenant" in a else "*"
                model = a["model"][1].value if "model" in a else "*"
                has_default |= tenant == "*" and model == "*"
            if not has_default:
                self.err(
                    top["assignments"][1], "assignments need a default (tenant '*', model '*')"
                )

    def profile(self, name: str, node: yaml.Node) -> None:
        p = self.mapping(node, f"profile '{name}'")
        for key, (knode, _) in p.items():
            if key not in _PROFILE_KEYS:
                self.err(knode, f"unknown profile key '{key}'")
        custom = set()
        for rnode in self.seq(p["recognizers"][1], "recognizers") if "recognizers" in p else []:
            custom.add(self.recognizer(rnode))
        deny = self.mapping(p["deny_list"][1], "deny_list") if "deny_list" in p else {}
        allowed = KNOWN_ENTITIES | custom | set(deny)
        if "entities" not in p:
            self.err(node, f"profile '{name}' needs 'entities'")
        else:
            for ent, (knode, vnode) in self.mapping(p["entities"][1], "entities").items():
                if ent not in allowed:
                    self.err(
                        knode,
                        f"unknown entity '{ent}' (not built in, not a custom recognizer or deny list)",
                    )
                self.threshold(vnode)
        for ent, (knode, vnode) in deny.items():
            if not _ENTITY_NAME.match(ent):
                self.err(knode, f"entity name '{ent}' must be UPPER_SNAKE_CASE")
            for term in self.seq(vnode, "deny_list terms"):
                self.scalar(term, "a deny_list term")
        if "restore_answers" in p and (
            self.scalar(p["restore_answers"][1], "restore_answers") or ""
        ).lower() not in ("true", "false"):
            self.err(p["restore_answers"][1], "restore_answers must be true or false")
        if "tier" in p and self.scalar(p["tier"][1], "tier") not in TIERS:
            self.err(
                p["tier"][1], f"unknown tier '{p['tier'][1].value}' (one of {', '.join(TIERS)})"
            )
        if "operator" in p:
            self.operator(p["operator"][1])
        if "operators" in p:
            for ent, (knode, vnode) in self.mapping(p["operators"][1], "operators").items():
                if ent not in allowed:
                    self.err(knode, f"unknown entity '{ent}'")
                self.operator(vnode)
        if "allow_list" in p:
            for term in self.seq(p["allow_list"][1], "allow_list"):
                self.scalar(term, "an allow_list term")
        if "mask_char" in p and len(self.scalar(p["mask_char"][1], "mask_char") or "") != 1:
            self.err(p["mask_char"][1], "mask_char must be one character")

    def recognizer(self, node: yaml.Node) -> str:
        r = self.mapping(node, "a recognizer")
        for key, (knode, _) in r.items():
            if key not in _RECOGNIZER_KEYS:
                self.err(knode, f"unknown recognizer key '{key}'")
        for key in ("name", "entity", "patterns"):
            if key not in r:
                self.err(node, f"recognizer needs '{key}'")
        entity = self.scalar(r["entity"][1], "entity") if "entity" in r else None
        if entity is not None and not _ENTITY_NAME.match(entity):
            self.err(r["entity"][1], f"entity name '{entity}' must be UPPER_SNAKE_CASE")
        for pnode in self.seq(r["patterns"][1], "patterns") if "patterns" in r else []:
            pat = self.mapping(pnode, "a pattern")
            if "regex" not in pat:
                self.err(pnode, "pattern needs 'regex'")
            else:
                regex = self.scalar(pat["regex"][1], "regex") or ""
                try:
                    re.compile(regex)
                except re.error as exc:
                    self.err(pat["regex"][1], f"invalid regex: {exc.msg}")
                else:
                    from secure_aiaas.privacy.linear import compile_linear

                    try:
                        compile_linear(regex)
                    except Exception:  # re2.error: lookaround, backreferences, too large
                        self.err(
                            pat["regex"][1],
                            "regex needs backtracking (lookaround or "
                            "backreferences): not allowed, scrubbing must run in linear time",
                        )
            if "score" in pat:
                self.threshold(pat["score"][1])
        if "context" in r:
            for c in self.seq(r["context"][1], "context"):
                self.scalar(c, "a context word")
        return entity or ""

    def threshold(self, node: yaml.Node) -> None:
        value = self.scalar(node, "a score")
        try:
            ok = value is not None and 0.0 <= float(value) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            self.err(
                node, f"score must be a number between 0 and 1, got '{getattr(node, 'value', '')}'"
            )

    def operator(self, node: yaml.Node) -> None:
        value = self.scalar(node, "operator")
        if value is not None and value not in OPERATORS:
            self.err(node, f"unknown operator '{value}' (one of {', '.join(OPERATORS)})")
