"""FHIRPath parser: expression text -> a small AST (precedence climbing over a regex tokenizer)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from silver.views.errors import FhirPathSyntaxError


@dataclass(frozen=True)
class Literal:
    kind: str  # string | integer | decimal | boolean | date | dateTime | time
    value: str | bool


@dataclass(frozen=True)
class EmptyLiteral:
    """``{}``: the empty collection."""


@dataclass(frozen=True)
class Constant:
    name: str  # %name, without the percent sign


@dataclass(frozen=True)
class Variable:
    name: str  # this | index | total


@dataclass(frozen=True)
class Member:
    target: Node | None  # None: navigation from the current context
    name: str


@dataclass(frozen=True)
class Call:
    target: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Indexer:
    target: Node
    index: Node


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Literal | EmptyLiteral | Constant | Variable | Member | Call | Indexer | Unary | Binary

# lowest to highest precedence (FHIRPath N1 section 10)
_BINARY_PRECEDENCE: dict[str, int] = {
    "implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5, "<": 6, ">": 6, "<=": 6, ">=": 6, "|": 7, "is": 8, "as": 8,
    "+": 9, "-": 9, "&": 9, "*": 10, "/": 10, "div": 10, "mod": 10,
}
_WORD_OPERATORS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@T?\d[\d\-:T.+Z]*)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<delimited>`(?:[^`\\]|\\.)*`)
  | (?P<constant>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<variable>\$[A-Za-z]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[=~<>|&+\-*/])
  | (?P<punct>[.,()\[\]{}])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str) -> str:
    def repl(m: re.Match[str]) -> str:
        ch = m.group(1)
        if ch.startswith("u"):
            return chr(int(ch[1:], 16))
        return _ESCAPES.get(ch, ch)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", repl, body)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(expr: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise FhirPathSyntaxError(f"FHIRPath {expr!r}: unexpected character {expr[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Tok("eof", "", len(expr)))
    return tokens


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.i = 0

    def error(self, msg: str) -> FhirPathSyntaxError:
        return FhirPathSyntaxError(f"FHIRPath {self.expr!r}: {msg} at {self.peek().pos}")

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        if self.peek().text != text:
            raise self.error(f"expected {text!r}, found {self.peek().text or 'end of expression'!r}")
        self.i += 1

    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek().kind != "eof":
            raise self.error(f"unexpected {self.peek().text!r}")
        return node

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" and tok.text in _BINARY_PRECEDENCE:
            return tok.text
        if tok.kind == "ident" and tok.text in _WORD_OPERATORS:
            return tok.text
        return None

    def expression(self, min_prec: int) -> Node:
        left = self.unary()
        while (op := self.binary_op()) is not None and _BINARY_PRECEDENCE[op] > min_prec:
            self.take()
            if op in ("is", "as"):
                right: Node = Member(None, self.qualified_name())
            else:
                right = self.expression(_BINARY_PRECEDENCE[op])
            left = Binary(op, left, right)
        return left

    def qualified_name(self) -> str:
        parts = [self.identifier()]
        while self.peek().text == ".":
            self.take()
            parts.append(self.identifier())
        return ".".join(parts)

    def identifier(self) -> str:
        tok = self.take()
        if tok.kind == "ident":
            return tok.text
        if tok.kind == "delimited":
            return _unescape(tok.text[1:-1])
        raise FhirPathSyntaxError(f"FHIRPath {self.expr!r}: expected a name at {tok.pos}, found {tok.text!r}")

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("+", "-"):
            self.take()
            return Unary(tok.text, self.unary())
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.peek()
            if tok.text == ".":
                self.take()
                name = self.identifier()
                if self.peek().text == "(":
                    node = Call(node, name, self.arguments())
                else:
                    node = Member(node, name)
            elif tok.text == "[":
                self.take()
                index = self.expression(0)
                self.expect("]")
                node = Indexer(node, index)
            else:
                return node

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.expression(0))
            while self.peek().text == ",":
                self.take()
                args.append(self.expression(0))
        self.expect(")")
        return tuple(args)

    def term(self) -> Node:
        tok = self.peek()
        if tok.kind == "number":
            self.take()
            return Literal("decimal" if "." in tok.text else "integer", tok.text)
        if tok.kind == "string":
            self.take()
            return Literal("string", _unescape(tok.text[1:-1]))
        if tok.kind == "datetime":
            self.take()
            body = tok.text[1:]
            kind = "time" if body.startswith("T") else ("dateTime" if "T" in body else "date")
            return Literal(kind, body.removeprefix("T") if kind == "time" else body)
        if tok.kind == "constant":
            self.take()
            name = tok.text[1:]
            if name[0] in "`'":
                name = _unescape(name[1:-1])
            return Constant(name)
        if tok.kind == "variable":
            self.take()
            return Variable(tok.text[1:])
        if tok.text == "(":
            self.take()
            inner = self.expression(0)
            self.expect(")")
            return inner
        if tok.text == "{":
            self.take()
            self.expect("}")
            return EmptyLiteral()
        if tok.kind == "ident" and tok.text in ("true", "false"):
            self.take()
            return Literal("boolean", tok.text == "true")
        if tok.kind in ("ident", "delimited"):
            name = self.identifier()
            if self.peek().text == "(":
                return Call(None, name, self.arguments())
            return Member(None, name)
        raise self.error(f"unexpected {tok.text or 'end of expression'!r}")


def parse(expr: str) -> Node:
    """Parse one FHIRPath expression; raises FhirPathSyntaxError naming the expression."""
    if not isinstance(expr, str) or not expr.strip():
        raise FhirPathSyntaxError(f"FHIRPath expression must be a non-empty string, got {expr!r}")
    return _Parser(expr).parse()
