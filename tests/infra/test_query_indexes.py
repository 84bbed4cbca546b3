"""Every Firestore query in the storage layer has an index (#17).

The emulator answers any query, index or not, so a query whose composite
index is missing passes every local run and fails in the cloud
(FAILED_PRECONDITION, "The query requires an index"). This file reads
functions/aperture/storage/*.py with `ast` and follows each query from the
collection it starts at (`db.collection(C)`, `self._collection`,
`self._items(job_id)`, ...) through `where(filter=FieldFilter(field, op, v))`,
`order_by`, `find_nearest`, `limit`, `start_after`, `count` to the
`stream()`/`get()` that runs it. A query built under `if`s has one shape per
combination of branches: the variable holding it carries the set of shapes
each path can give (ImageStore.list's five optional filters: 32 shapes).
Every shape is checked against the indexes declared in infra/firestore.tf
(the cloud) and in infra/firestore.indexes.json (the emulator's copy).

The rules, Firestore native mode, read conservatively:

* served by the automatic single-field indexes: no filter and no order (or
  only `__name__` ascending); filters and orders that all name one field;
  equality (`==`) filters only, on any number of fields (Firestore merges
  single-field indexes for equality filters);
* anything else needs a composite index: the equality fields first, in any
  order (`==` fields ASCENDING or DESCENDING, `array_contains` as CONTAINS),
  then the `order_by` fields with their directions, then any inequality field
  not ordered on. Merging composite indexes that share an order suffix is not
  relied on (it is not documented for range filters or array_contains): each
  combination of filters has its own index;
* Firestore ends every composite index with `__name__` in the direction of
  its last field (and a snapshot cursor orders on `__name__` the same way),
  so a trailing `__name__` declared in that direction is the same index;
* `find_nearest`: a vector index with the pre-filter (`==`) fields, then
  `__name__`, then the vector field;
* a field exempted from single-field indexing (the TTL fields) serves no
  automatic query.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from tests.infra.test_terraform import Tf

ROOT = Path(__file__).resolve().parents[2]
STORAGE = ROOT / "functions" / "aperture" / "storage"
INFRA = ROOT / "infra"

EQUALITY = {"==", "in", "array_contains", "array_contains_any"}
ARRAY = {"array_contains", "array_contains_any"}
INEQUALITY = {"<", "<=", ">", ">=", "!=", "not-in", "not_in"}
# query methods that change nothing an index depends on (a snapshot cursor
# orders on __name__ in the direction of the last order, as the index does)
KEEP = {"limit", "limit_to_last", "offset", "select", "start_after", "start_at", "end_before", "end_at", "count"}
RUN = {"stream", "get"}
QUERY_METHODS = {"where", "order_by", "find_nearest", "stream", *KEEP}

ASC, DESC, CONTAINS, VECTOR = "ASCENDING", "DESCENDING", "CONTAINS", "VECTOR"


@dataclasses.dataclass(frozen=True)
class Shape:
    """One query as Firestore receives it."""

    collection: str
    scope: str = "COLLECTION"
    filters: tuple[tuple[str, str], ...] = ()  # (field, operator), in call order
    orders: tuple[tuple[str, str], ...] = ()  # (field, ASCENDING|DESCENDING), in call order
    vector: str | None = None  # find_nearest's vector_field

    def __str__(self) -> str:
        text = f"{self.collection}({', '.join(f'{f} {op}' for f, op in self.filters)})"
        if self.orders:
            text += " order_by " + ", ".join(f"{f} {d}" for f, d in self.orders)
        if self.vector:
            text += f" find_nearest {self.vector}"
        return text


# --------------------------------------------------------------------------------
# Reading the storage layer
# --------------------------------------------------------------------------------


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _expressions(stmt: ast.stmt) -> list[ast.expr]:
    """The expressions a statement evaluates itself (not those of nested blocks)."""
    if isinstance(stmt, (ast.Expr, ast.Return, ast.Assign, ast.AugAssign, ast.AnnAssign)):
        return [stmt.value] if stmt.value is not None else []
    if isinstance(stmt, (ast.If, ast.While, ast.Assert)):
        return [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.iter]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [item.context_expr for item in stmt.items]
    if isinstance(stmt, ast.Raise):
        return [stmt.exc] if stmt.exc is not None else []
    return []


def _merge(*envs: dict | None) -> dict | None:
    """Where paths join: each variable holds the shapes of every path that reaches here."""
    live = [env for env in envs if env is not None]
    if not live:
        return None
    out: dict[str, frozenset[Shape]] = {}
    for env in live:
        for name, shapes in env.items():
            out[name] = out.get(name, frozenset()) | shapes
    return out


class _Module:
    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants: dict[str, str] = {}  # NAME = "..." and A, B = "...", "..." at module level
        for node in self.tree.body:
            for target in node.targets if isinstance(node, ast.Assign) else []:
                pairs = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts))
                for name, value in pairs:
                    if isinstance(name, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                        self.constants[name.id] = value.value
        self.queries: dict[str, set[Shape]] = {}  # "file:Class.function" -> shapes it runs
        self.understood: set[ast.Call] = set()  # query-method calls on something known to be a query
        self.problems: list[str] = []
        parents = {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                cls = parents.get(node)
                while cls is not None and not isinstance(cls, ast.ClassDef):
                    cls = parents.get(cls)
                _Function(self, cls, node).run()


class _Function:
    def __init__(self, module: _Module, cls: ast.ClassDef | None, function: ast.FunctionDef | ast.AsyncFunctionDef):
        self.module, self.cls, self.function = module, cls, function
        self.where = f"{module.path.name}:{cls.name + '.' if cls else ''}{function.name}"
        self.methods = {
            f.name: f for f in (cls.body if cls else []) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        self.expanding: set[str] = set()  # self-methods being inlined (recursion guard)

    def problem(self, node: ast.AST, text: str) -> None:
        self.module.problems.append(f"{self.where} (line {node.lineno}): {text}")

    def run(self) -> None:
        self.block(self.function.body, {})

    # -- statements ------------------------------------------------------------

    def block(self, body: list[ast.stmt], env: dict | None) -> dict | None:
        """The variables holding queries after `body`; None when no path falls through."""
        for stmt in body:
            if env is None:
                return None
            env = self.statement(stmt, env)
        return env

    def statement(self, stmt: ast.stmt, env: dict) -> dict | None:
        for expression in _expressions(stmt):
            self.runs(expression, env)
        if isinstance(stmt, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
            return None
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            shapes = self.evaluate(stmt.value, env)
            env = dict(env)
            for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                if isinstance(target, ast.Name):
                    if shapes:
                        env[target.id] = shapes
                    else:
                        env.pop(target.id, None)
            return env
        if isinstance(stmt, ast.If):
            return _merge(self.block(stmt.body, env), self.block(stmt.orelse, env))
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            looped = _merge(env, self.block(stmt.body, env))
            return _merge(looped, self.block(stmt.orelse, looped)) if stmt.orelse else looped
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            return self.block(stmt.body, env)
        if isinstance(stmt, ast.Try):
            body = self.block(stmt.body + stmt.orelse, env)
            handlers = [self.block(h.body, _merge(env, body)) for h in stmt.handlers]
            after = _merge(body, *handlers)
            return self.block(stmt.finalbody, after) if stmt.finalbody else after
        return env

    def runs(self, expression: ast.expr, env: dict) -> None:
        """Record the queries `expression` runs (`<query>.stream()`, `<query>.get()`)."""
        for node in ast.walk(expression):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RUN:
                shapes = self.evaluate(node.func.value, env)
                if shapes:
                    if any(shape.collection == "?" for shape in shapes):
                        self.problem(node, "a query of a collection whose name is not a module constant")
                    self.module.understood.add(node)
                    self.module.queries.setdefault(self.where, set()).update(shapes)

    # -- expressions -----------------------------------------------------------

    def constant(self, node: ast.expr | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.module.constants.get(node.id)
        return None

    def init_assignment(self, attr: str) -> ast.expr | None:
        """What `__init__` assigns to `self.<attr>`."""
        init = self.methods.get("__init__")
        for node in ast.walk(init) if init else []:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and _is_self(target.value) and target.attr == attr:
                        return node.value
        return None

    def returned(self, name: str) -> frozenset[Shape] | None:
        """The query a `self.<name>(...)` helper returns (its single return statement)."""
        if name in self.expanding:
            return None
        values = [n.value for n in ast.walk(self.methods[name]) if isinstance(n, ast.Return) and n.value is not None]
        if len(values) != 1:
            return None
        self.expanding.add(name)
        try:
            return self.evaluate(values[0], {})
        finally:
            self.expanding.discard(name)

    def evaluate(self, node: ast.expr, env: dict) -> frozenset[Shape] | None:
        """The shapes of the query `node` evaluates to, or None when it is no query."""
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute) and _is_self(node.value):
            assigned = self.init_assignment(node.attr)
            return self.evaluate(assigned, {}) if assigned is not None else None
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            return None
        method, receiver = node.func.attr, node.func.value
        if method in ("collection", "collection_group"):
            name = self.constant(node.args[0] if node.args else None) or "?"  # "?": an error once queried
            return frozenset({Shape(name, "COLLECTION" if method == "collection" else "COLLECTION_GROUP")})
        if _is_self(receiver) and method in self.methods:
            return self.returned(method)
        if method not in QUERY_METHODS:
            return None
        base = self.evaluate(receiver, env)
        if not base:
            return None
        self.module.understood.add(node)
        if method == "where":
            condition = self.condition(node)
            return frozenset(dataclasses.replace(s, filters=(*s.filters, condition)) for s in base)
        if method == "order_by":
            order = self.order(node)
            return frozenset(dataclasses.replace(s, orders=(*s.orders, order)) for s in base)
        if method == "find_nearest":
            vector = self.constant(next((k.value for k in node.keywords if k.arg == "vector_field"), None))
            if vector is None:
                self.problem(node, "find_nearest without a literal vector_field")
            return frozenset(dataclasses.replace(s, vector=vector or "?") for s in base)
        return base  # KEEP, and stream() used as a value

    def condition(self, call: ast.Call) -> tuple[str, str]:
        """(field, operator) of `where(filter=FieldFilter(f, op, v))` or `where(f, op, v)`."""
        args = call.args
        flt = next((k.value for k in call.keywords if k.arg == "filter"), None)
        if isinstance(flt, ast.Call):
            callee = flt.func.attr if isinstance(flt.func, ast.Attribute) else getattr(flt.func, "id", None)
            if callee != "FieldFilter":
                self.problem(call, f"where(filter={callee}(...)): only FieldFilter is understood")
                return ("?", "?")
            args = flt.args
        field = self.constant(args[0]) if len(args) > 0 else None
        op = self.constant(args[1]) if len(args) > 1 else None
        if field is None or op is None:
            self.problem(call, "where() whose field or operator is not a literal")
            return ("?", "?")
        return (field, op)

    def order(self, call: ast.Call) -> tuple[str, str]:
        field = self.constant(call.args[0] if call.args else None)
        direction = next((k.value for k in call.keywords if k.arg == "direction"), None)
        if direction is None and len(call.args) > 1:
            direction = call.args[1]
        if direction is None:
            name = ASC
        elif isinstance(direction, ast.Attribute):
            name = direction.attr
        else:
            name = self.constant(direction) or "?"
        if field is None or name not in (ASC, DESC):
            self.problem(call, "order_by() whose field or direction is not a literal")
        return (field or "?", name)


def _analyse() -> tuple[dict[str, set[Shape]], list[str]]:
    queries: dict[str, set[Shape]] = {}
    problems: list[str] = []
    for path in sorted(STORAGE.glob("*.py")):
        module = _Module(path)
        queries.update(module.queries)
        problems += module.problems
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in QUERY_METHODS
                and node not in module.understood
            ):
                problems.append(f"{path.name} (line {node.lineno}): .{node.func.attr}() on something not traced")
    return queries, problems


QUERIES, PROBLEMS = _analyse()


# --------------------------------------------------------------------------------
# The index a shape needs
# --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Needed:
    """A composite index: `prefix` in any order, each (field, modes it may have), then `suffix` exactly."""

    collection: str
    scope: str
    prefix: tuple[tuple[str, frozenset[str]], ...]
    suffix: tuple[tuple[str, str], ...]

    def matches(self, collection: str, scope: str, fields: tuple[tuple[str, str], ...]) -> bool:
        fields = _normal(fields)
        if (collection, scope) != (self.collection, self.scope) or len(fields) != len(self.prefix) + len(self.suffix):
            return False
        head, tail = fields[: len(self.prefix)], fields[len(self.prefix) :]
        modes = dict(self.prefix)
        return (
            {f for f, _ in head} == set(modes)
            and all(mode in modes[f] for f, mode in head)
            and _normal(tail) == _normal(self.suffix)
        )

    def __str__(self) -> str:
        prefix = ", ".join(f"{f} {'|'.join(sorted(m))}" for f, m in self.prefix)
        suffix = ", ".join(f"{f} {d}" for f, d in self.suffix)
        return f"{self.collection}({prefix}{', ' if prefix and suffix else ''}{suffix})"


def _normal(fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Without a trailing __name__ that runs the way the field before it does
    (every composite index ends so implicitly)."""
    if len(fields) >= 2 and fields[-1][0] == "__name__" and fields[-1][1] == fields[-2][1]:
        return fields[:-1]
    return fields


def needed(shape: Shape) -> Needed | None:
    """The composite (or vector) index `shape` needs; None when single-field indexes serve it."""
    equal = [(f, op) for f, op in shape.filters if op in EQUALITY]
    unequal = [f for f, op in shape.filters if op in INEQUALITY]
    orders = tuple(shape.orders)
    if shape.vector:
        return Needed(
            shape.collection,
            shape.scope,
            tuple((f, frozenset({ASC})) for f, _ in equal),
            (("__name__", ASC), (shape.vector, VECTOR)),
        )
    fields = {f for f, _ in shape.filters} | {f for f, _ in orders if f != "__name__"}
    if orders in ((), (("__name__", ASC),)) and all(op == "==" for _, op in shape.filters):
        return None  # no filter, or equality filters only: single-field indexes, merged
    if len(fields) <= 1 and all(f in fields or (f, d) == ("__name__", ASC) for f, d in orders):
        return None  # one field: its own single-field index
    ordered = {f for f, _ in orders}
    direction = orders[-1][1] if orders else ASC
    suffix = orders + tuple((f, direction) for f in sorted(set(unequal) - ordered))
    prefix = tuple(
        {
            f: frozenset({CONTAINS}) if op in ARRAY else frozenset({ASC, DESC}) for f, op in equal if f not in ordered
        }.items()
    )
    return Needed(shape.collection, shape.scope, prefix, suffix)


# --------------------------------------------------------------------------------
# The declared indexes
# --------------------------------------------------------------------------------


def _terraform(tf: Tf) -> tuple[set[tuple], set[tuple[str, str]]]:
    """infra/firestore.tf: {(collection, scope, fields)}, and the fields exempted from single-field indexing."""
    indexes = set()
    for body in tf.resources["google_firestore_index"].values():
        fields = []
        for field in tf.blocks(body, "fields"):
            path = tf.attr(field, "field_path")
            if "vector_config" in field:
                fields.append((path, VECTOR))
            elif tf.attr(field, "array_config"):
                fields.append((path, tf.attr(field, "array_config")))
            else:
                fields.append((path, tf.attr(field, "order")))
        indexes.add((tf.attr(body, "collection"), tf.attr(body, "query_scope", "COLLECTION"), tuple(fields)))
    exempt = set()
    for body in tf.resources.get("google_firestore_field", {}).values():
        configs = tf.blocks(body, "index_config")
        if configs and not any(config.get("indexes") for config in configs):
            exempt.add((tf.attr(body, "collection"), tf.attr(body, "field")))
    return indexes, exempt


def _index_file() -> tuple[set[tuple], set[tuple[str, str]]]:
    """infra/firestore.indexes.json, the same way."""
    doc = json.loads((INFRA / "firestore.indexes.json").read_text())
    indexes = set()
    for index in doc.get("indexes", []):
        fields = tuple(
            (
                f["fieldPath"],
                VECTOR if "vectorConfig" in f else f.get("arrayConfig") or f.get("order"),
            )
            for f in index["fields"]
        )
        indexes.add((index["collectionGroup"], index.get("queryScope", "COLLECTION"), fields))
    exempt = {(o["collectionGroup"], o["fieldPath"]) for o in doc.get("fieldOverrides", []) if o.get("indexes") == []}
    return indexes, exempt


@pytest.fixture(scope="module")
def declared() -> dict[str, tuple[set[tuple], set[tuple[str, str]]]]:
    return {"infra/firestore.tf": _terraform(Tf()), "infra/firestore.indexes.json": _index_file()}


# --------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------

# What the analysis must find: every function that runs a query, and how many
# shapes its branches give. A new query lands here once its index is declared.
QUERY_FUNCTIONS = {
    "identity.py:IdentityStore.list_teams": 1,  # order_by team_id
    "identity.py:IdentityStore.list_users": 1,  # team ==
    "identity.py:IdentityStore.key_by_id": 1,  # key_id ==
    "identity.py:IdentityStore.list_keys": 2,  # all, or team ==
    "images.py:ImageStore.find_by_filename": 1,  # team ==, filename ==
    "images.py:ImageStore.nearest": 1,  # team ==, embedding_model ==, find_nearest embedding
    "images.py:ImageStore.list": 32,  # team ==, [format ==], [camera ==], [labels array_contains],
    # [created_at >=], [created_at <], order_by created_at DESCENDING
    "images.py:ImageStore.expired_tombstones": 1,  # tombstones: drop_after <
    "images.py:ImageStore.stale_pending": 1,  # status ==, created_at <, order_by created_at
    "images.py:ImageStore.processed": 1,  # team ==, status ==
    "counters.py:TeamCounters.markers": 1,  # counted: team ==
    "counters.py:TeamCounters.rebuild": 1,  # counted: team ==
    "jobs.py:JobStore.list": 1,  # team ==, order_by created_at DESCENDING
    "jobs.py:JobStore.cancel": 1,  # items: state ==
    "jobs.py:JobStore.items": 1,  # items: order_by index
    "jobs.py:JobStore.items_for_image": 1,  # items (collection group): image_id ==
    "upload_links.py:UploadLinkStore.find_by_id": 1,  # link_id ==
}

CASES = [(where, shape) for where in sorted(QUERIES) for shape in sorted(QUERIES[where], key=str)]


def test_every_query_in_the_storage_layer_is_read():
    """Each query-method call is traced back to the collection it queries and
    forward to where it runs; a construct the analysis does not follow is an
    error, not a query silently left unchecked."""
    assert not PROBLEMS, "\n".join(PROBLEMS)
    assert {where: len(shapes) for where, shapes in QUERIES.items()} == QUERY_FUNCTIONS


def test_the_conditional_filters_of_image_listing_give_every_combination():
    shapes = QUERIES["images.py:ImageStore.list"]
    optional = {
        ("format", "=="),
        ("camera", "=="),
        ("labels", "array_contains"),
        ("created_at", ">="),
        ("created_at", "<"),
    }
    assert {frozenset(s.filters) - {("team", "==")} for s in shapes} == {
        frozenset(c for i, c in enumerate(sorted(optional)) if mask >> i & 1) for mask in range(32)
    }
    assert {s.orders for s in shapes} == {(("created_at", DESC),)}


@pytest.mark.parametrize(("where", "shape"), CASES, ids=[f"{where} {shape}" for where, shape in CASES])
def test_every_query_has_its_index(where: str, shape: Shape, declared):
    need = needed(shape)
    for source, (indexes, exempt) in declared.items():
        if need is None:
            used = {f for f, _ in (*shape.filters, *shape.orders) if f != "__name__"}
            blocked = sorted(f for f in used if (shape.collection, f) in exempt)
            assert not blocked, f"{where}: {shape} needs the single-field index of {blocked}, exempted in {source}"
            continue
        found = [fields for collection, scope, fields in indexes if need.matches(collection, scope, fields)]
        assert found, f"{where}: {shape} has no index {need} in {source}"


@pytest.mark.parametrize(
    ("shape", "index"),
    [
        (Shape("c"), None),
        (Shape("c", orders=(("a", ASC),)), None),
        (Shape("c", orders=(("a", DESC),)), None),
        (Shape("c", filters=(("a", "=="),)), None),
        (Shape("c", filters=(("a", ">="), ("a", "<")), orders=(("a", DESC),)), None),
        (Shape("c", filters=(("a", "=="), ("b", "=="), ("d", "=="))), None),
        (Shape("c", filters=(("a", "=="),), orders=(("__name__", ASC),)), None),
        (Shape("c", filters=(("a", "=="),), orders=(("b", DESC),)), "c(a ASCENDING|DESCENDING, b DESCENDING)"),
        (Shape("c", filters=(("a", "=="), ("b", ">"))), "c(a ASCENDING|DESCENDING, b ASCENDING)"),
        (Shape("c", filters=(("a", "=="), ("t", "array_contains"))), "c(a ASCENDING|DESCENDING, t CONTAINS)"),
        (
            Shape("c", filters=(("a", "=="), ("b", "=="), ("d", "<")), orders=(("d", DESC),)),
            "c(a ASCENDING|DESCENDING, b ASCENDING|DESCENDING, d DESCENDING)",
        ),
        (
            Shape("c", filters=(("a", "=="),), vector="v"),
            "c(a ASCENDING, __name__ ASCENDING, v VECTOR)",
        ),
    ],
    ids=str,
)
def test_the_index_rules(shape: Shape, index: str | None):
    """Equality filters merge; a sort or a range on another field, or an
    array_contains beside an equality, takes a composite index."""
    assert (str(needed(shape)) if needed(shape) else None) == index


def test_a_missing_index_is_noticed(declared):
    """Each composite index a query needs is matched by exactly the declared
    one: without it (in either file) the query has none, and a trailing
    __name__ running against the field before it is another index."""
    need = needed(Shape("images", filters=(("team", "=="), ("format", "==")), orders=(("created_at", DESC),)))
    for indexes, _ in declared.values():
        assert len([i for i in indexes if need.matches(*i)]) == 1
    fields = (("team", ASC), ("format", ASC), ("created_at", DESC))
    assert need.matches("images", "COLLECTION", (("format", DESC), ("team", ASC), ("created_at", DESC)))
    assert need.matches("images", "COLLECTION", (*fields, ("__name__", DESC)))
    assert not need.matches("images", "COLLECTION", (*fields, ("__name__", ASC)))
    assert not need.matches("images", "COLLECTION", (("team", ASC), ("format", ASC), ("created_at", ASC)))
    assert not need.matches("images", "COLLECTION_GROUP", fields)
