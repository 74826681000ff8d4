"""Filter expressions over one record's fields, checked against the fields and parsed once.

Expressions are Python-like (``price * quantity > 100 and currency == "EUR"``) with
simpleeval's language and rules. Everything that can be wrong with an expression is found when
it is compiled: syntax, constructs simpleeval does not evaluate, names that are not fields,
functions that do not exist. Evaluating it can then only fail on the data (a null where a
number was expected), which counts as "does not match".

simpleeval walks the syntax tree for every evaluation, which cost a quarter of the metrics
flow's time for a one-comparison filter. So the checked tree is compiled to bytecode instead,
with simpleeval's guards kept where they matter: ``+ * ** << >>`` go through its size-limited
``safe_*`` functions, attribute access through the same allow-list, functions by names a field
cannot shadow, and no builtins. The result is also safe to share between threads.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from typing import Any

import simpleeval

from riverbed.core.errors import Invalid

# rand/randint (simpleeval's defaults) are left out: a record must match the same way when a
# batch is processed again after a crash.
FUNCTIONS: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": lambda value="": _safe_str(value),  # weighed first: see MAX_SIZE
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


class ExpressionError(Invalid):
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


MAX_LENGTH = 2000  # characters of filter text; deeper nesting than this could recurse away
MAX_POWER_BITS = 4096  # an integer power larger than this is refused, not computed
#: Elements plus characters a value built or converted by a filter may hold. Lists repeat
#: cheaply (``[[0] * 99999] * 99999`` shares one inner list) but ``str()`` of that writes out
#: every element: 30 GB. Every value a filter builds with ``*`` or ``+``, and every value it
#: converts with ``str()``, is weighed against this first.
MAX_SIZE = 1_000_000


def _size(value: Any, budget: int = MAX_SIZE + 1) -> int:
    """Elements and characters in ``value``, counting shared parts each time they appear (as
    ``str()`` would write them); stops counting once past ``budget``."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if not isinstance(value, list | tuple | set | frozenset):
        return 1
    total = len(value)
    for item in value:
        if total > budget:
            break
        total += _size(item, budget - total)
    return total


def _bounded(value: Any) -> Any:
    if _size(value) > MAX_SIZE:
        raise ArithmeticError(f"a value of more than {MAX_SIZE} elements is too large for a filter")
    return value


def _safe_mult(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, list | tuple | str):
        left, right = right, left
    repeated = isinstance(left, list | tuple | str) and isinstance(right, int) and right > 0
    if repeated and _size(left) * right > MAX_SIZE:
        raise ArithmeticError("the repeated value is too large for a filter")
    return simpleeval.safe_mult(left, right)


def _safe_add(left: Any, right: Any) -> Any:
    return _bounded(simpleeval.safe_add(left, right))


def _safe_str(value: Any = "") -> str:
    return str(_bounded(value))


def _safe_power(base: Any, exponent: Any) -> Any:
    whole = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if whole and max(base.bit_length(), 1) * exponent > MAX_POWER_BITS:
        raise ArithmeticError(f"{base} ** {exponent} is too large for a filter")
    return simpleeval.safe_power(base, exponent)


def _safe_mod(left: Any, right: Any) -> Any:
    """Arithmetic only: ``"%50000000d" % 1`` would allocate whatever width it names."""
    if isinstance(left, str | bytes):
        raise TypeError("string formatting with % is not available in a filter")
    return left % right


# simpleeval's size-limited operators, with tighter powers and no %-formatting: a filter must
# not be able to build a gigabyte string or a million-digit number for one event.
_SAFE_OPERATORS: dict[type, Any] = {
    ast.Add: _safe_add,
    ast.Mult: _safe_mult,
    ast.Pow: _safe_power,
    ast.Mod: _safe_mod,
    ast.LShift: simpleeval.safe_lshift,
    ast.RShift: simpleeval.safe_rshift,
}
# Methods a filter may call: reading ones whose result is no bigger than their input. Not
# simpleeval's wider list, which includes padding (str.center(10**15)), replace/join (quadratic
# growth), int.to_bytes, and mutators (list.append would change the record for later rules).
ALLOWED_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        [
            "lower",
            "upper",
            "casefold",
            "title",
            "capitalize",
            "swapcase",
            "strip",
            "lstrip",
            "rstrip",
            "startswith",
            "endswith",
            "isdigit",
            "isalpha",
            "isalnum",
            "isnumeric",
            "isspace",
            "islower",
            "isupper",
            "count",
            "find",
            "rfind",
            "split",
            "rsplit",
            "partition",
            "rpartition",
        ]
    ),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    int: frozenset({"bit_length"}),
    float: frozenset({"is_integer"}),
}


def _attribute(value: Any, name: str) -> Any:
    if name.startswith("_") or name not in ALLOWED_METHODS.get(type(value), ()):
        raise AttributeError(f"{type(value).__name__}.{name} is not available in a filter")
    return getattr(value, name)


class _Compiler(ast.NodeTransformer):
    """Rewrite a checked tree so that plain bytecode keeps simpleeval's guards."""

    def __init__(self, called: set[int]) -> None:
        self.called = called

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if id(node) in self.called:
            return ast.copy_location(ast.Name(f"__fn_{node.id}", ast.Load()), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if type(node.op) not in _SAFE_OPERATORS:
            return node
        name = f"__op_{type(node.op).__name__}"
        call = ast.Call(ast.Name(name, ast.Load()), [node.left, node.right], [])
        return ast.copy_location(call, node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        if node.format_spec is not None:  # f"{x:>50000000}" pads to any width it names
            raise ExpressionError("format specifications in f-strings are not available")
        return self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if not any(node.attr in names for names in ALLOWED_METHODS.values()):
            raise ExpressionError(
                f"attribute {node.attr!r} is not available; methods are "
                f"{sorted(set().union(*ALLOWED_METHODS.values()))}"
            )
        self.generic_visit(node)
        call = ast.Call(ast.Name("__attr", ast.Load()), [node.value, ast.Constant(node.attr)], [])
        return ast.copy_location(call, node)


_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "__attr": _attribute,
    # The evaluator's functions: ours plus the compound-type constructors it adds.
    **{f"__fn_{name}": fn for name, fn in _evaluator().functions.items()},
    **{f"__op_{op.__name__}": fn for op, fn in _SAFE_OPERATORS.items()},
}


class Expression:
    """A compiled filter; :meth:`matches` is cheap enough to call for every event."""

    def __init__(self, text: str, fields: Collection[str]) -> None:
        """Raise :class:`ExpressionError` unless ``text`` is a valid filter over ``fields``."""
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError("the expression is empty")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"not an expression: {exc.msg} (column {exc.offset})") from None
        except (RecursionError, MemoryError):
            raise ExpressionError("the expression is nested too deeply") from None
        self.text = text
        try:
            tree = ast.fix_missing_locations(_Constants().visit(tree))
            _check(tree, frozenset(fields), _evaluator())
            called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
            compiled = ast.fix_missing_locations(_Compiler(called).visit(tree))
            self._code = compile(compiled, "<filter>", "eval")
        except (RecursionError, MemoryError):
            raise ExpressionError("the expression is nested too deeply") from None

    def matches(self, record: dict[str, Any]) -> bool:
        """True if the expression is truthy for ``record``; an error on its values is False."""
        try:
            return bool(eval(self._code, _GLOBALS, record))  # checked tree, no builtins
        except (
            TypeError,
            ValueError,
            ArithmeticError,
            LookupError,
            AttributeError,
            NameError,
            MemoryError,
            RecursionError,
            simpleeval.InvalidExpression,
        ):
            return False

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
