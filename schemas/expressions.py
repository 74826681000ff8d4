"""Filter expressions over one record's fields, checked against the fields and parsed once.

Expressions are Python-like (``price * quantity > 100 and currency == "EUR"``) and evaluated
by simpleeval, which never hands them Python's ``eval``. Everything that can be wrong with an
expression is found when it is compiled: syntax, constructs simpleeval does not evaluate, names
that are not fields, functions that do not exist. Evaluating it can then only fail on the data
(a null where a number was expected), which counts as "does not match".
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from typing import Any

import simpleeval

# rand/randint (simpleeval's defaults) are left out: a record must match the same way when a
# batch is processed again after a crash.
FUNCTIONS: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "len": len,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "lower": lambda s: s.lower(),
}
# TOML and JSON spellings too, so a filter reads like the data it is about.
CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_PLAIN_NODES = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)


class ExpressionError(ValueError):
    """The text is not a filter expression over the given fields; the message says why."""


def _evaluator() -> simpleeval.EvalWithCompoundTypes:
    return simpleeval.EvalWithCompoundTypes(
        functions=FUNCTIONS, names={}, allowed_attrs=simpleeval.BASIC_ALLOWED_ATTRS
    )


class _Constants(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in CONSTANTS:
            return ast.copy_location(ast.Constant(CONSTANTS[node.id]), node)
        return node


def _check(tree: ast.Expression, fields: Collection[str], evaluator: Any) -> None:
    """Refuse what simpleeval would refuse per event, and names that are not fields."""
    # A name in call position is a function, every other name a field.
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree.body):
        if isinstance(node, _PLAIN_NODES):
            if isinstance(node, ast.operator | ast.unaryop | ast.cmpop) and (
                type(node) not in evaluator.operators
            ):
                raise ExpressionError(f"operator {type(node).__name__} is not supported")
            continue
        if isinstance(node, _COMPREHENSIONS) or type(node) not in evaluator.nodes:
            raise ExpressionError(f"{type(node).__name__} is not supported in a filter")
        if isinstance(node, ast.Name):
            if id(node) in called:
                if node.id not in evaluator.functions:
                    raise ExpressionError(
                        f"unknown function {node.id!r}; functions are {sorted(evaluator.functions)}"
                    )
            elif node.id not in fields:
                raise ExpressionError(f"unknown field {node.id!r}; fields are {sorted(fields)}")


class Expression:
    """A compiled filter; :meth:`matches` is cheap enough to call for every event."""

    def __init__(self, text: str, fields: Collection[str]) -> None:
        """Raise :class:`ExpressionError` unless ``text`` is a valid filter over ``fields``."""
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError("the expression is empty")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"not an expression: {exc.msg} (column {exc.offset})") from None
        tree = ast.fix_missing_locations(_Constants().visit(tree))
        self.text = text
        self._evaluator = _evaluator()
        _check(tree, frozenset(fields), self._evaluator)
        self._parsed = tree.body

    def matches(self, record: dict[str, Any]) -> bool:
        """True if the expression is truthy for ``record``; an error on its values is False.

        Not thread-safe (the evaluator holds the record while it runs): one per thread.
        """
        self._evaluator.names = record
        try:
            return bool(self._evaluator.eval(self.text, previously_parsed=self._parsed))
        except (
            TypeError,
            ValueError,
            ArithmeticError,
            LookupError,
            AttributeError,
            simpleeval.InvalidExpression,
        ):
            return False

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
