"""Package list for the one top-level name ``headstart`` (metadata lives in pyproject.toml).

Each root folder maps to a subpackage (``shared`` -> ``headstart.shared``); its own
subpackages are found here so that adding ``jobs/<new job>/`` needs no packaging edit.
"""
from setuptools import find_namespace_packages, setup

ROOTS = ("shared", "jobs", "infra")

packages = []
for root in ROOTS:
    packages.append(f"headstart.{root}")
    packages += [f"headstart.{root}.{p}" for p in find_namespace_packages(root, exclude=["*__pycache__*"])]

setup(packages=packages, package_data={"headstart.infra": ["statemachine/*.json", "*.yaml"]})
