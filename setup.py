"""espnet_omni: omni-sparsity and dual-mode supernets as an ESPnet extension."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def _requirements():
    """Runtime pins from requirements.txt (the test runner line excluded)."""
    reqs = []
    for line in (HERE / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("pytest"):
            reqs.append(line)
    return reqs


setup(
    name="espnet_omni",
    version="0.1.0",
    description="Omni-sparsity and dual-mode ASR supernets for ESPnet",
    python_requires=">=3.12,<3.14",
    packages=find_packages(include=["espnet_omni", "espnet_omni.*"]),
    install_requires=_requirements(),
    extras_require={"test": ["pytest>=8.0,<9"]},
)
