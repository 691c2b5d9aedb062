"""The two hash locks agree: what tests run on is what the image ships, plus the tools.

requirements.lock is the image's runtime lock; requirements-dev.lock is generated with it as
constraints and adds the test, lint and bench extras (scripts/bootstrap installs both). A dev lock
regenerated without the constraint, or a runtime lock changed without regenerating the dev lock,
would let the tests run on other versions than the image: these tests catch both.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+) \\$")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def _locked(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{canonical name: (version, hashes)} of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    current: str | None = None
    for line in (REPO / name).read_text().splitlines():
        if pin := _PIN.match(line):
            current = canonicalize_name(pin[1])
            pins[current] = (pin[2], frozenset())
        elif current is not None and (digest := _HASH.search(line)):
            version, hashes = pins[current]
            pins[current] = (version, hashes | {digest[1]})
        elif not line.startswith(" "):
            current = None
        assert not line.startswith(("-e ", "file:")) and " @ " not in line, f"{name}: unhashable {line!r}"
    return pins


def test_dev_lock_repeats_every_runtime_pin_with_its_hashes() -> None:
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")
    assert runtime, "requirements.lock: no pins found"
    for name, (version, hashes) in runtime.items():
        assert name in dev, (
            f"requirements-dev.lock lacks {name}=={version}: regenerate it (README, Dependencies)"
        )
        assert dev[name][0] == version, (
            f"requirements-dev.lock pins {name}=={dev[name][0]}, the image {version}"
        )
        assert dev[name][1] == hashes, (
            f"requirements-dev.lock: {name}'s hashes differ from requirements.lock's"
        )


def test_every_pin_is_hashed() -> None:
    for name in ("requirements.lock", "requirements-dev.lock"):
        unhashed = [package for package, (_, hashes) in _locked(name).items() if not hashes]
        assert not unhashed, f"{name}: no hashes for {unhashed}"


def test_dev_lock_pins_what_the_extras_pin() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    dev = _locked("requirements-dev.lock")
    for extra, requirements in pyproject["project"]["optional-dependencies"].items():
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in dev, f"requirements-dev.lock lacks {name} of the {extra!r} extra"
            assert requirement.specifier.contains(dev[name][0]), (
                f"requirements-dev.lock pins {name}=={dev[name][0]}, the {extra!r} extra wants {requirement}"
            )
