"""xapi's ``get_all_records_where`` expressions: ``field "name__label" = "x" and not (...)``.

As xapi's lexer reads them (xen-api ocaml/database/db_filter_lex.mll:7-18): a string runs from one
double quote to the next, with no escapes; ``=`` is the only comparison; the keywords are lower
case; anything else does not lex."""

import re
from typing import Any, Callable, Dict, List, Tuple

Predicate = Callable[[Dict[str, Any]], bool]

_TOKEN = re.compile(r'[ \t\n]*(?:(\()|(\))|(=)|"([^"]*)"|(true|false|field|and|or|not))')


class WhereSyntaxError(ValueError):
    """The expression does not parse."""


def _tokens(text: str) -> List[Tuple[str, str]]:
    out = []
    pos = 0
    text = text.strip(" \t\n")
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise WhereSyntaxError("cannot parse at %r" % text[pos : pos + 20])
        pos = match.end()
        lpar, rpar, op, string, word = match.groups()
        if lpar:
            out.append(("(", lpar))
        elif rpar:
            out.append((")", rpar))
        elif op:
            out.append(("op", op))
        elif string is not None:
            out.append(("str", string))
        else:
            out.append(("word", word))
    return out


def as_text(value: Any) -> str:
    """How xapi compares a field: its wire text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_where(text: str) -> Predicate:
    """A predicate over records for the expression ``text``."""
    tokens = _tokens(text)
    if not tokens:
        return lambda record: True
    pos = [0]

    def peek() -> Tuple[str, str]:
        return tokens[pos[0]] if pos[0] < len(tokens) else ("end", "")

    def take(kind: str) -> str:
        tok = peek()
        if tok[0] != kind:
            raise WhereSyntaxError("expected %s, found %r" % (kind, tok[1] or "end"))
        pos[0] += 1
        return tok[1]

    def disjunction() -> Predicate:
        left = conjunction()
        while peek() == ("word", "or"):
            pos[0] += 1
            right = conjunction()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def conjunction() -> Predicate:
        left = unary()
        while peek() == ("word", "and"):
            pos[0] += 1
            right = unary()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def unary() -> Predicate:
        tok = peek()
        if tok == ("word", "not"):
            pos[0] += 1
            inner = unary()
            return lambda r: not inner(r)
        if tok[0] == "(":
            pos[0] += 1
            inner = disjunction()
            take(")")
            return inner
        if tok == ("word", "true"):
            pos[0] += 1
            return lambda r: True
        if tok == ("word", "false"):
            pos[0] += 1
            return lambda r: False
        return comparison()

    def operand() -> Tuple[bool, str]:
        tok = peek()
        if tok == ("word", "field"):
            pos[0] += 1
            return True, take("str").replace("__", "_")
        return False, take("str")

    def comparison() -> Predicate:
        left = operand()
        take("op")
        right = operand()

        def value(side: Tuple[bool, str], record: Dict[str, Any]) -> str:
            is_field, text = side
            return as_text(record.get(text, "")) if is_field else text

        return lambda r: value(left, r) == value(right, r)

    predicate = disjunction()
    if pos[0] != len(tokens):
        raise WhereSyntaxError("unexpected %r" % peek()[1])
    return predicate
