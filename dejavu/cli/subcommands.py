"""Subcommands whose modules load only when chosen: ``dejavu --help`` lists every command from a table of
one-line summaries without importing any of them.

A command's module imports its stage at its top (torch, numba, the head models: seconds on a small CPU),
so the listing and a mistyped command must not import them all. argparse picks the subcommand; the action
below then imports its module (the CLI's one import by name) and lets it add its arguments before the
remaining words are parsed, so ``dejavu track --help`` shows track's full help.
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Callable

#: ``setup(module, parser)``: add the chosen subcommand's arguments (and ``func``) from its module.
Setup = Callable[[ModuleType, argparse.ArgumentParser], None]


class _LoadOnChoice(argparse._SubParsersAction):
    """argparse's subparsers action that imports ``<package>.<name>`` of the chosen subcommand and calls
    ``setup`` on its parser before parsing the rest of the command line with it."""

    def __init__(self, *args, package: str, setup: Setup, **kwargs):
        super().__init__(*args, **kwargs)
        self._package, self._setup = package, setup
        self._loaded: set[str] = set()

    def __call__(self, parser, namespace, values, option_string=None):
        name = values[0]
        if name in self._name_parser_map and name not in self._loaded:
            self._loaded.add(name)
            self._setup(importlib.import_module(f"{self._package}.{name}"), self._name_parser_map[name])
        super().__call__(parser, namespace, values, option_string)


def add_subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str, package: str,
                    summaries: dict[str, str], setup: Setup) -> None:
    """One subcommand per ``summaries`` entry (name -> its line in ``--help``, in listing order), implemented
    by module ``<package>.<name>``; the chosen one is imported and completed by ``setup``."""
    sub = parser.add_subparsers(dest=dest, metavar=metavar, action=_LoadOnChoice, package=package, setup=setup)
    for name, summary in summaries.items():
        # argparse %-formats help texts: a literal "10%" would break --help
        sub.add_parser(name, help=summary.replace("%", "%%"))
