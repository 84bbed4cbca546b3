"""What the provider does with values that parse and look right (S12): an
Eventarc destination named the way the API wants it, a Firestore vector index
declared the way the API returns it (or every apply replaces it), the
emulator's index file agreeing with the cloud's and never deployed, and the
functions zip free of local build output. Offline: the .tf files are parsed
(`hcl2`) and the few expressions that matter are evaluated here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aperture.vision import local as vision_local
from tests.support.tools import require
from tests.support.uploads import BUILD_OUTPUTS, archive_excluded

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


# --------------------------------------------------------------------------------
# Parsing (both hcl2 parsers: bc-python-hcl2 wraps attribute values in lists,
# python-hcl2 >= 5 keeps the quotes of literals and adds __is_block__ markers)
# --------------------------------------------------------------------------------


def _clean(value):
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if not re.fullmatch(r"__\w+__", str(k))}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def _one(value):
    """An attribute's value (bc-python-hcl2 wraps it in a one-element list)."""
    return value[0] if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict) else value


def _blocks(body: dict, key: str) -> list[dict]:
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, dict]]:
    hcl2 = require("hcl2")
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        doc = _clean(hcl2.loads(path.read_text()))
        for entry in doc.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    found.setdefault(rtype, {})[name] = body
    return found


# --------------------------------------------------------------------------------
# A few Terraform expressions, evaluated
# --------------------------------------------------------------------------------

# Values the provider gives the attributes these expressions read, for a
# function (and Cloud Run service) named "process" in us-central1.
FULL_SERVICE_NAME = "projects/example-project/locations/us-central1/services/process"
REFERENCES = {
    # Cloud Functions v2 API, ServiceConfig.service: "Name of the service
    # associated with a Function. The format of this field is
    # projects/{project}/locations/{region}/services/{service}" (output only).
    r"google_cloudfunctions2_function\.\w+(\[[^\]]+\])?\.service_config\[0\]\.service": FULL_SERVICE_NAME,
    r"google_cloudfunctions2_function\.\w+(\[[^\]]+\])?\.name": "process",
    r"google_cloud_run_v2_service\.\w+(\[[^\]]+\])?\.name": "process",
    r"google_cloud_run_v2_service\.\w+(\[[^\]]+\])?\.id": FULL_SERVICE_NAME,
    r"google_cloud_run_service\.\w+(\[[^\]]+\])?\.name": "process",
    r"each\.value\.function|each\.key|each\.value": "process",
}

_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>\d+)|(?P<name>[A-Za-z_][\w.\-]*)|(?P<punct>[(),\[\]]))'
)


class _Evaluator:
    """Literals, the references above, function calls of regex, replace, split,
    element, reverse, basename, trimprefix, and [n]. Anything else is refused:
    extend it when the configuration needs more."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def evaluate(self):
        value = self._expression()
        if self.text[self.pos :].strip():
            raise ValueError(f"cannot evaluate {self.text!r} beyond {self.pos}")
        return value

    def _expression(self):
        for pattern, value in REFERENCES.items():
            match = re.compile(rf"\s*({pattern})(?![\w.\[])").match(self.text, self.pos)
            if match:
                self.pos = match.end()
                return self._index(value)
        token = _TOKEN.match(self.text, self.pos)
        if not token:
            raise ValueError(f"cannot evaluate {self.text!r} at {self.pos}")
        self.pos = token.end()
        if token.group("string"):
            return self._index(json.loads(token.group("string")))
        if token.group("number"):
            return int(token.group("number"))
        if token.group("name") and self._peek("("):
            self._expect("(")
            args = [] if self._peek(")") else [self._expression()]
            while self._peek(","):
                self._expect(",")
                args.append(self._expression())
            self._expect(")")
            return self._index(self._call(token.group("name"), args))
        raise ValueError(f"cannot evaluate {token.group(0).strip()!r} in {self.text!r}")

    def _index(self, value):
        while self._peek("["):
            self._expect("[")
            index = self._expression()
            self._expect("]")
            value = value[index]
        return value

    @staticmethod
    def _call(name: str, args: list):
        if name == "regex":  # RE2 and Python agree on the patterns used here
            match = re.search(args[0], args[1])
            if not match:
                raise ValueError(f"regex {args[0]!r} does not match {args[1]!r} (Terraform fails the plan)")
            return match.group(0) if not match.groups() else list(match.groups())
        functions = {
            "replace": lambda s, old, new: s.replace(old, new),
            "split": lambda sep, s: s.split(sep),
            "element": lambda items, i: items[i % len(items)],
            "reverse": lambda items: list(reversed(items)),
            "basename": lambda s: s.rsplit("/", 1)[-1],
            "trimprefix": lambda s, prefix: s[len(prefix) :] if s.startswith(prefix) else s,
        }
        if name not in functions:
            raise ValueError(f"function {name} is not known to this test")
        return functions[name](*args)

    def _peek(self, char: str) -> bool:
        return self.text[self.pos :].lstrip().startswith(char)

    def _expect(self, char: str) -> None:
        stripped = self.text[self.pos :].lstrip()
        if not stripped.startswith(char):
            raise ValueError(f"expected {char!r} in {self.text!r} at {self.pos}")
        self.pos = len(self.text) - len(stripped) + 1


def evaluate(value: str):
    """A Terraform value: a literal, or one "${...}" interpolation."""
    match = re.fullmatch(r"\$\{(.*)\}", value.strip(), re.S)
    return _Evaluator(match.group(1)).evaluate() if match else value


def test_the_evaluator_knows_the_full_and_the_bare_forms():
    ref = "google_cloudfunctions2_function.function[each.value.function].service_config[0].service"
    assert evaluate("${" + ref + "}") == FULL_SERVICE_NAME
    assert evaluate('${regex("[^/]+$", ' + ref + ")}") == "process"
    assert evaluate('${element(split("/", ' + ref + "), 5)}") == "process"
    assert evaluate('${reverse(split("/", ' + ref + "))[0]}") == "process"
    assert evaluate("${each.value.function}") == "process"
    with pytest.raises(ValueError):
        evaluate("${lookup(local.x, each.key)}")


# --------------------------------------------------------------------------------
# Eventarc
# --------------------------------------------------------------------------------


def test_eventarc_triggers_name_their_cloud_run_service_bare(resources):
    """google_eventarc_trigger destination.cloud_run_service.service is "the
    name of the Cloud Run service being addressed" (the bare name; the region
    is its own argument), while a gen2 function's service_config[0].service is
    the full projects/P/locations/R/services/NAME: passed as it is, the trigger
    names a service that does not exist."""
    triggers = resources.get("google_eventarc_trigger", {})
    assert "extra_bucket" in triggers, "the source-bucket trigger of process is missing"
    checked = 0
    for name, body in triggers.items():
        for destination in _blocks(body, "destination"):
            for run in _blocks(destination, "cloud_run_service"):
                service = evaluate(_one(run["service"]))
                assert isinstance(service, str) and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", service), (
                    f"google_eventarc_trigger.{name}: service evaluates to {service!r}, not a bare service name"
                )
                assert service == "process"
                assert _one(run.get("region")), f"google_eventarc_trigger.{name}: the region goes in its own argument"
                checked += 1
    assert checked, "no cloud_run_service destination checked"


# --------------------------------------------------------------------------------
# Firestore
# --------------------------------------------------------------------------------


def _tf_index_fields(body: dict) -> list[tuple[str, str]]:
    fields = []
    for field in _blocks(body, "fields"):
        path = _one(field["field_path"])
        if "vector_config" in field:
            fields.append((path, f"VECTOR:{_one(_blocks(field, 'vector_config')[0]['dimension'])}"))
        elif "array_config" in field:
            fields.append((path, _one(field["array_config"])))
        else:
            fields.append((path, _one(field["order"])))
    return fields


def _json_index_fields(index: dict) -> list[tuple[str, str]]:
    fields = []
    for field in index["fields"]:
        if "vectorConfig" in field:
            fields.append((field["fieldPath"], f"VECTOR:{field['vectorConfig']['dimension']}"))
        else:
            fields.append((field["fieldPath"], field.get("order") or field["arrayConfig"]))
    return fields


def _assert_vector_index_as_returned(where: str, fields: list[tuple[str, str]]) -> None:
    """Firestore returns a vector index as its ordered fields, then __name__
    (ordered), then the vector field, last."""
    kinds = [kind for _, kind in fields]
    vectors = [i for i, kind in enumerate(kinds) if kind.startswith("VECTOR")]
    assert vectors == [len(fields) - 1], f"{where}: one vector field, last: {fields}"
    assert len(fields) >= 2 and fields[-2][0] == "__name__", (
        f"{where}: declare __name__ just before the vector field, as the API returns it: {fields}"
    )
    assert fields[-2][1] in ("ASCENDING", "DESCENDING"), f"{where}: __name__ needs an order"
    assert [path for path, _ in fields].count("__name__") == 1, f"{where}: __name__ twice"


def test_vector_indexes_declare_name_before_the_vector_field(resources):
    """The provider ignores an implicit __name__ only as the last field; for a
    vector index the API puts it before the vector field, so leaving it out
    means a diff on every plan and, indexes being immutable, a replacement of
    the index on every apply."""
    vector_indexes = {
        name: _tf_index_fields(body)
        for name, body in resources["google_firestore_index"].items()
        if any("vector_config" in field for field in _blocks(body, "fields"))
    }
    assert vector_indexes, "no vector index in infra/"
    for name, fields in vector_indexes.items():
        _assert_vector_index_as_returned(f"google_firestore_index.{name}", fields)
        assert fields[-1][1] == "VECTOR:${local.embedding_dimensions}", f"{name}: the cloud provider's length"


def test_the_emulator_index_file_has_the_clouds_fields():
    """infra/firestore.indexes.json (the emulator's, Firebase format) declares
    the same indexes with the same fields in the same order as Terraform, the
    vector index included; only the vector's length differs (the local
    provider's)."""
    hcl2 = require("hcl2")
    declared = []
    for path in sorted(INFRA.glob("*.tf")):
        doc = _clean(hcl2.loads(path.read_text()))
        for entry in doc.get("resource", []):
            for body in entry.get("google_firestore_index", {}).values():
                declared.append((_one(body["collection"]), _one(body.get("query_scope", "COLLECTION")), body))
    cloud = sorted((c, s, tuple(_tf_index_fields(b))) for c, s, b in declared)
    doc = json.loads((INFRA / "firestore.indexes.json").read_text())
    local = []
    for index in doc["indexes"]:
        fields = _json_index_fields(index)
        if any(kind.startswith("VECTOR") for _, kind in fields):
            _assert_vector_index_as_returned(f"firestore.indexes.json {index['collectionGroup']}", fields)
            assert fields[-1][1] == f"VECTOR:{vision_local.DIMENSIONS}", "the emulator's index is the local provider's"
            fields[-1] = (fields[-1][0], "VECTOR:${local.embedding_dimensions}")
        local.append((index["collectionGroup"], index.get("queryScope", "COLLECTION"), tuple(fields)))
    assert sorted(local) == cloud


def test_the_local_index_file_is_never_deployed():
    """Nothing that deploys reads infra/firestore.indexes.json (its vector
    index has the local provider's 384 dimensions): not Terraform, not the
    deploy script, not Cloud Build, not the Makefile."""
    for path in [*INFRA.glob("*.tf"), ROOT / "scripts" / "deploy.sh", ROOT / "cloudbuild.yaml", ROOT / "Makefile"]:
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        assert "indexes.json" not in code, f"{path.name} reads the emulator's index file"
        assert not re.search(r"firestore\s+indexes|firebase\s+deploy", code), f"{path.name} deploys indexes"
        assert not re.search(rf"\bdimension\s*=\s*{vision_local.DIMENSIONS}\b", code), f"{path.name}: a 384-d index"


# --------------------------------------------------------------------------------
# The functions zip
# --------------------------------------------------------------------------------


def test_the_functions_zip_carries_no_local_build_output():
    """Terraform zips functions/ (data.archive_file.functions): caches and
    build output would be uploaded with every deploy and, by changing the zip's
    hash, redeploy every function after a mere test run."""
    hcl2 = require("hcl2")
    doc = _clean(hcl2.loads((INFRA / "functions.tf").read_text()))
    archive = next(entry["archive_file"]["functions"] for entry in doc["data"] if "archive_file" in entry)
    excludes = archive["excludes"]
    excludes = excludes[0] if len(excludes) == 1 and isinstance(excludes[0], list) else excludes
    inside = [path[len("functions/") :] for path in BUILD_OUTPUTS if path.startswith("functions/")]
    assert inside
    leaking = [path for path in inside if not archive_excluded(path, excludes)]
    assert not leaking, f"the functions zip would carry: {leaking}"
    for source in ("main.py", "requirements.txt", "aperture/api/stats.py", "native/jpegrows/jpegrows.c"):
        assert not archive_excluded(source, excludes), f"the functions zip would lack {source}"
