"""Operational-transform merge: the subset of Realm Sync's rules this app exercises.

A pure-Python model of realm-core's instruction merge, `src/realm/sync/transform.cpp`
(the `DEFINE_MERGE` / `DEFINE_NESTED_MERGE` rules, e.g. the nested "Clear" rule that
discards any element operation inside a cleared list). DESIGN.md, "Merge rules",
is the authoritative table for this kit; where it and realm-core differ, the
difference is noted beside the rule below.

Why it exists: the data loss under investigation is a merge outcome. A resync
re-insert written as `Clear` + `ArrayInsert`s is concurrent with the device's
appends, and `Clear` beats every concurrent `ArrayInsert` into that list whatever
the timestamps, so the list converges to the stale snapshot while the
`CreateObject`s survive. The emulator's server and devices both merge through
`transform`, exactly as realm-core's server and clients share one transformer.

Formats (DESIGN.md "Contracts"): instructions are dicts with realm-core names, a
changeset is `{"origin": int, "timestamp": int, "instructions": [...]}`, a state
is `{"Node": {pk: {field: value, ...}}}` whose list fields (`LIST_FIELDS`) hold
lists of pks of the same table. Lists keep links to erased objects ("dangling
links", as realm-core does since it has unresolved links); `visible` hides them.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterable
from typing import Any, Callable

__all__ = ["LIST_FIELDS", "COLUMN_DEFAULTS", "rule_name", "validate", "order_key", "apply", "transform", "transform_past", "rebase", "visible", "converge"]

LIST_FIELDS = frozenset({"children"})
_SORTED_LIST_FIELDS = tuple(sorted(LIST_FIELDS))

#: What a created object's unset columns hold: realm-core gives a required string column
#: its default, "" (the recorded realm-core outcomes read a never-set text as "").
COLUMN_DEFAULTS: dict[str, Any] = {"text": ""}

_PK_FIELD = "_id"

_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "CreateObject": ("table", "object"),
    "EraseObject": ("table", "object"),
    "Update": ("table", "object", "field", "value"),
    "ArrayInsert": ("table", "object", "field", "index", "value", "prior_size"),
    "ArrayErase": ("table", "object", "field", "index", "prior_size"),
    "Clear": ("table", "object", "field"),
}

Instruction = dict[str, Any]
Changeset = dict[str, Any]
State = dict[str, dict[str, dict[str, Any]]]
Key = tuple[int, int]
Tracer = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_instruction(instr: Any, where: str) -> None:
    """Raise ValueError naming `where` if `instr` is not a well-formed instruction."""
    if not isinstance(instr, dict):
        raise ValueError(f"{where} must be a dict, got {type(instr).__name__}")
    op = instr.get("op")
    if op not in _REQUIRED_KEYS:
        raise ValueError(f"{where}.op: unknown op {op!r} (expected one of {sorted(_REQUIRED_KEYS)})")
    missing = [k for k in _REQUIRED_KEYS[op] if k not in instr]
    if missing:
        raise ValueError(f"{where}: {op} is missing key(s) {missing}")
    for key in ("table", "object"):
        if not isinstance(instr[key], str):
            raise ValueError(f"{where}.{key} must be a string, got {instr[key]!r}")
    if "field" in _REQUIRED_KEYS[op] and not isinstance(instr["field"], str):
        raise ValueError(f"{where}.field must be a string, got {instr['field']!r}")
    if op in ("ArrayInsert", "ArrayErase", "Clear") and instr["field"] not in LIST_FIELDS:
        raise ValueError(f"{where}.field: {op} needs a list field {sorted(LIST_FIELDS)}, got {instr['field']!r}")
    if op == "Update":
        _validate_update(instr, where)
    if op in ("ArrayInsert", "ArrayErase"):
        for key in ("index", "prior_size"):
            if not _is_int(instr[key]) or instr[key] < 0:
                raise ValueError(f"{where}.{key} must be an int >= 0, got {instr[key]!r}")
        limit = instr["prior_size"] if op == "ArrayInsert" else instr["prior_size"] - 1
        if instr["index"] > limit:
            raise ValueError(f"{where}.index {instr['index']} is out of range for prior_size {instr['prior_size']}")
    if op == "ArrayInsert" and not isinstance(instr["value"], str):
        raise ValueError(f"{where}.value must be a pk string (a link), got {instr['value']!r}")


def _validate_update(instr: Instruction, where: str) -> None:
    field = instr["field"]
    if not isinstance(instr.get("is_default", False), bool):
        raise ValueError(f"{where}.is_default must be a bool, got {instr['is_default']!r}")
    if "index" in instr:
        if field not in LIST_FIELDS:
            raise ValueError(f"{where}.index: a list-element Update needs a list field, got {field!r}")
        if not _is_int(instr["index"]) or instr["index"] < 0:
            raise ValueError(f"{where}.index must be an int >= 0, got {instr['index']!r}")
        if not isinstance(instr["value"], str):
            raise ValueError(f"{where}.value must be a pk string (a link), got {instr['value']!r}")
        if "prior_size" in instr:
            size = instr["prior_size"]
            if not _is_int(size) or not 0 <= instr["index"] < size:
                raise ValueError(f"{where}.prior_size {size!r} does not fit index {instr['index']}")
    else:
        if field in LIST_FIELDS:
            raise ValueError(
                f"{where}.field: Update of the whole list {field!r} is not modelled; use Clear + ArrayInsert"
            )
        if field == _PK_FIELD and instr["value"] != instr["object"]:
            raise ValueError(f"{where}.value: Update cannot change the primary key {_PK_FIELD!r}")


def _validate_changeset(changeset: Any, name: str) -> None:
    if not isinstance(changeset, dict):
        raise ValueError(f"{name} must be a dict, got {type(changeset).__name__}")
    for key in ("origin", "timestamp"):
        if key not in changeset:
            raise ValueError(f"{name} is missing key {key!r}")
        if not _is_int(changeset[key]):
            raise ValueError(f"{name}.{key} must be an int, got {changeset[key]!r}")
    instructions = changeset.get("instructions")
    if not isinstance(instructions, list):
        raise ValueError(f"{name}.instructions must be a list, got {instructions!r}")
    for n, instr in enumerate(instructions):
        _validate_instruction(instr, f"{name}.instructions[{n}]")


def validate(changeset: Any, name: str = "changeset") -> None:
    """Raise ValueError naming the problem if `changeset` is not well formed."""
    _validate_changeset(changeset, name)


def _validate_state(state: Any, name: str = "state") -> None:
    if not isinstance(state, dict):
        raise ValueError(f"{name} must be a dict of tables, got {type(state).__name__}")
    for table, objects in state.items():
        if not isinstance(objects, dict):
            raise ValueError(f"{name}[{table!r}] must be a dict of objects by pk")


# --------------------------------------------------------------------------- apply


def order_key(changeset: Changeset) -> Key:
    """(timestamp, origin): the higher key is the "last writer" (realm-core's Discriminant)."""
    _validate_changeset(changeset, "changeset")
    return (changeset["timestamp"], changeset["origin"])


def _list_size(obj: dict[str, Any], field: str, where: str) -> int:
    lst = obj.get(field, [])
    if not isinstance(lst, list):
        raise ValueError(f"{where}: state field {field!r} of object {obj.get(_PK_FIELD)!r} is not a list")
    return len(lst)


def _dry_run(state: State, instructions: list[Instruction]) -> None:
    """Raise ValueError if any instruction would fail, before anything changes.

    Follows only what can fail (which objects exist, each touched list's length), so a
    changeset is checked in time linear in its size, without copying the lists.
    """
    exists: dict[tuple[str, str], bool] = {}
    sizes: dict[tuple[str, str, str], int] = {}
    for n, instr in enumerate(instructions):
        op, table, pk = instr["op"], instr["table"], instr["object"]
        key = (table, pk)
        if op == "CreateObject":
            if not exists.get(key, pk in state.get(table, {})):
                exists[key] = True
                for field in LIST_FIELDS:
                    sizes[(table, pk, field)] = 0
            continue
        if op == "EraseObject":
            exists[key] = False
            continue
        if not exists.get(key, pk in state.get(table, {})):
            continue  # an op on a missing object is ignored
        if op == "Update" and "index" not in instr:
            continue
        where = f"changeset.instructions[{n}]"
        field = instr["field"]
        skey = (table, pk, field)
        size = sizes[skey] if skey in sizes else _list_size(state[table][pk], field, where)
        if "prior_size" in instr and instr["prior_size"] != size:
            raise ValueError(f"{where}.prior_size {instr['prior_size']} != list length {size} (bad changeset)")
        index = instr.get("index")
        if op == "Clear":
            size = 0
        elif op == "ArrayInsert":
            if index > size:
                raise ValueError(f"{where}.index {index} is out of range for a list of {size}")
            size += 1
        else:  # ArrayErase, or Update of one element
            if index >= size:
                raise ValueError(f"{where}.index {index} is out of range for a list of {size}")
            if op == "ArrayErase":
                size -= 1
        sizes[skey] = size


def _apply_all(state: State, instructions: list[Instruction]) -> None:
    """Apply instructions in place, in order; `_dry_run` has checked they cannot fail.

    One loop, no call per instruction: every device applies every download, so this is
    the emulator's innermost loop."""
    deepcopy = copy.deepcopy
    for instr in instructions:
        op, pk = instr["op"], instr["object"]
        objects = state.get(instr["table"])
        if objects is None:
            objects = state[instr["table"]] = {}
        if op == "Update":
            obj = objects.get(pk)
            if obj is None:
                continue  # an op on a missing object is ignored (it was erased concurrently)
            value = instr["value"]
            if "index" in instr:
                obj[instr["field"]][instr["index"]] = value
            else:
                obj[instr["field"]] = deepcopy(value) if isinstance(value, (list, dict)) else value
        elif op == "ArrayInsert":
            obj = objects.get(pk)
            if obj is not None:
                obj.setdefault(instr["field"], []).insert(instr["index"], instr["value"])
        elif op == "CreateObject":
            if pk not in objects:
                objects[pk] = {_PK_FIELD: pk, **COLUMN_DEFAULTS, **{f: [] for f in _SORTED_LIST_FIELDS}}
        elif op == "EraseObject":
            objects.pop(pk, None)
        else:
            obj = objects.get(pk)
            if obj is None:
                continue
            if op == "ArrayErase":
                del obj[instr["field"]][instr["index"]]
            else:  # Clear
                obj[instr["field"]] = []


# Compiled form of a trusted changeset: the emulator applies one download to every device of
# its owner, so the instruction dicts are read once into tuples and shared. Codes:
_SET, _SET_ELEMENT, _INSERT, _CREATE, _ERASE, _ARRAY_ERASE, _CLEAR = range(7)
#: id -> [changeset, steps (compiled on first apply), root effects, objects, positions by object (on first need)]
_COMPILED: dict[int, list[Any]] = {}
_COMPILED_MAX = 4096
_COMPILED_LOCK = threading.Lock()


def _compile(instructions: list[Instruction]) -> list[tuple[Any, ...]]:
    """(code, table, pk, field, index, value) per step; a CreateObject followed by plain Updates
    of the same object becomes one step carrying those fields, in their order."""
    out: list[tuple[Any, ...]] = []
    n = len(instructions)
    i = 0
    while i < n:
        instr = instructions[i]
        op, table, pk = instr["op"], instr["table"], instr["object"]
        if op == "CreateObject":
            fields: list[tuple[str, Any]] = []
            j = i + 1
            while j < n:
                nxt = instructions[j]
                if nxt["op"] != "Update" or "index" in nxt or nxt["object"] != pk or nxt["table"] != table:
                    break
                fields.append((nxt["field"], nxt["value"]))
                j += 1
            # The new object as `_apply_all` would build it (pk, defaults, empty lists, then the
            # fields in order), its lists and containers to be made fresh for each state.
            template: dict[str, Any] = {_PK_FIELD: pk, **COLUMN_DEFAULTS, **{f: None for f in _SORTED_LIST_FIELDS}}
            fresh: list[tuple[str, Any]] = [(f, None) for f in _SORTED_LIST_FIELDS]
            for name, value in fields:
                container = isinstance(value, (list, dict))
                template[name] = None if container else value
                fresh = [item for item in fresh if item[0] != name]
                if container:
                    fresh.append((name, value))
            out.append((_CREATE, table, pk, None, template,
                        (tuple((name, value, isinstance(value, (list, dict))) for name, value in fields), tuple(fresh))))
            i = j
            continue
        if op == "Update":
            if "index" in instr:
                out.append((_SET_ELEMENT, table, pk, instr["field"], instr["index"], instr["value"]))
            else:
                out.append((_SET, table, pk, instr["field"], None, instr["value"]))
        elif op == "ArrayInsert":
            out.append((_INSERT, table, pk, instr["field"], instr["index"], instr["value"]))
        elif op == "EraseObject":
            out.append((_ERASE, table, pk, None, None, None))
        elif op == "ArrayErase":
            out.append((_ARRAY_ERASE, table, pk, instr["field"], instr["index"], None))
        else:  # Clear
            out.append((_CLEAR, table, pk, instr["field"], None, None))
        i += 1
    return out


def _compiled_entry(changeset: Changeset) -> list[Any]:
    """(changeset, steps, root effects, objects touched), computed once per changeset object (by identity; the
    cache holds the changeset, so its id cannot be reused while cached)."""
    key = id(changeset)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is changeset:
        return hit
    instructions = changeset["instructions"]
    erases = any(ins["op"] == "EraseObject" for ins in instructions)
    root_pks = tuple(dict.fromkeys(ins["object"] for ins in instructions
                                   if ins["op"] == "Update" and ins["field"] in _ROOT_FIELDS))
    entry = [changeset, None, (erases, root_pks), {(ins["table"], ins["object"]) for ins in instructions}, None]
    with _COMPILED_LOCK:
        if len(_COMPILED) >= _COMPILED_MAX:  # forget the oldest quarter (dicts keep insertion order)
            for old in list(itertools.islice(_COMPILED, _COMPILED_MAX // 4)):
                del _COMPILED[old]
        _COMPILED[key] = entry
    return entry


_ROOT_FIELDS = frozenset({"isRoot", "owner_id"})


def apply_trusted(state: State, changeset: Changeset) -> tuple[bool, tuple[str, ...]]:
    """`apply(state, changeset, validate=False)`, returning the changeset's `root_effects`
    from the same cache lookup (a device's download path does both for every download).

    Compiled from its second application on: a changeset applied once (by one device) is
    cheaper applied as it is; one shared by many devices is compiled once for all."""
    entry = _compiled_entry(changeset)
    steps = entry[1]
    if steps is None:
        entry[1] = False  # seen once
        _apply_all(state, changeset["instructions"])
    else:
        if steps is False:
            steps = entry[1] = _compile(changeset["instructions"])
        _apply_steps(state, steps)
    return entry[2]


def apply_once(state: State, changeset: Changeset) -> None:
    """Apply a trusted changeset that no other peer will apply (a download rebased by one
    device): nothing about it is cached."""
    _apply_all(state, changeset["instructions"])


def root_effects(changeset: Changeset) -> tuple[bool, tuple[str, ...]]:
    """(erases an object?, pks whose isRoot/owner_id it sets): what may change which object is
    an owner's root. Computed once per changeset object, for every device that applies it."""
    return _compiled_entry(changeset)[2]


def _apply_steps(state: State, steps: list[tuple[Any, ...]]) -> None:
    """`_apply_all` on compiled steps: the same effects, in the same order."""
    deepcopy = copy.deepcopy
    for code, table, pk, field, index, value in steps:
        objects = state.get(table)
        if objects is None:
            objects = state[table] = {}
        if code == _CREATE:
            obj = objects.get(pk)
            if obj is None:  # `index` holds the new object's template; fresh lists and containers go in
                obj = objects[pk] = index.copy()
                for name, val in value[1]:
                    obj[name] = [] if val is None else deepcopy(val)
            else:
                for name, val, container in value[0]:
                    obj[name] = deepcopy(val) if container else val
        elif code == _INSERT:
            obj = objects.get(pk)
            if obj is not None:
                obj.setdefault(field, []).insert(index, value)
        elif code == _SET:
            obj = objects.get(pk)
            if obj is not None:
                obj[field] = deepcopy(value) if isinstance(value, (list, dict)) else value
        elif code == _SET_ELEMENT:
            obj = objects.get(pk)
            if obj is not None:
                obj[field][index] = value
        elif code == _ERASE:
            objects.pop(pk, None)
        else:
            obj = objects.get(pk)
            if obj is None:
                continue
            if code == _ARRAY_ERASE:
                del obj[field][index]
            else:  # Clear
                obj[field] = []


def apply(state: State, changeset: Changeset, *, validate: bool = True) -> State:
    """Apply `changeset` to `state` in place and return `state`.

    All or nothing: a bad changeset (out-of-range index, prior_size that does not
    match the list) raises ValueError and leaves `state` unchanged. Ops on missing
    objects are ignored. `validate=False` trusts the changeset: for what the emulator's
    own peers built and the server already applied, where a failure would be a bug in
    the model rather than bad input (it then raises, possibly half-applied).
    """
    if validate:
        _validate_state(state)
        _validate_changeset(changeset, "changeset")
        _dry_run(state, changeset["instructions"])
        _apply_all(state, changeset["instructions"])
    else:
        apply_trusted(state, changeset)
    return state


def visible(state: State) -> State:
    """A deep copy of `state` whose lists hide dangling links (pks of missing objects)."""
    _validate_state(state)
    out: State = {}
    for table, objects in state.items():
        out[table] = {pk: _visible_object(obj, objects) for pk, obj in objects.items()}
    return out


def _visible_object(obj: dict[str, Any], objects: dict[str, Any]) -> dict[str, Any]:
    return {
        k: [v for v in val if v in objects] if k in LIST_FIELDS and isinstance(val, list) else copy.deepcopy(val)
        for k, val in obj.items()
    }


# --------------------------------------------------------------------------- transform


def _later(kx: Key, ky: Key) -> bool:
    """True when x's changeset is the later one; equal keys cannot be ordered fairly."""
    if kx == ky:
        raise ValueError(
            f"a, b: both changesets have order key (timestamp, origin) = {kx}; "
            "concurrent changesets need distinct keys"
        )
    return kx > ky


def _last_writer(x: Instruction, kx: Key, y: Instruction, ky: Key) -> tuple[Instruction | None, Instruction | None]:
    """Update vs Update of the same value: a non-default write beats an is_default one, else the later wins.

    realm-core ignores is_default for list-element updates; DESIGN/this model apply it to both.
    """
    dx, dy = bool(x.get("is_default", False)), bool(y.get("is_default", False))
    if dx != dy:
        return (None, y) if dx else (x, None)
    return (x, None) if _later(kx, ky) else (None, y)


def _check_same_size(x: Instruction, y: Instruction) -> None:
    if "prior_size" in x and "prior_size" in y and x["prior_size"] != y["prior_size"]:
        raise ValueError(
            f"a, b: they disagree on the size of {x['table']}.{x['object']}.{x['field']} "
            f"({x['prior_size']} vs {y['prior_size']}): not based on the same state"
        )


def _shift_size(instr: Instruction, delta: int) -> None:
    if "prior_size" in instr:
        instr["prior_size"] += delta


def _insert_vs_insert(x: Instruction, kx: Key, y: Instruction, ky: Key):
    _shift_size(x, +1)
    _shift_size(y, +1)
    if x["index"] > y["index"] or (x["index"] == y["index"] and _later(kx, ky)):
        x["index"] += 1  # same index: the earlier key keeps the slot, the later goes after it
    else:
        y["index"] += 1
    return x, y


def _erase_vs_insert(e: Instruction, ke: Key, i: Instruction, ki: Key):
    _shift_size(e, +1)
    _shift_size(i, -1)
    if i["index"] <= e["index"]:
        e["index"] += 1
    else:
        i["index"] -= 1
    return e, i


def _erase_vs_erase(x: Instruction, kx: Key, y: Instruction, ky: Key):
    if x["index"] == y["index"]:
        return None, None  # both sides already removed that element
    _shift_size(x, -1)
    _shift_size(y, -1)
    if x["index"] > y["index"]:
        x["index"] -= 1
    else:
        y["index"] -= 1
    return x, y


def _insert_vs_update(i: Instruction, ki: Key, u: Instruction, ku: Key):
    _shift_size(u, +1)
    if i["index"] <= u["index"]:
        u["index"] += 1
    return i, u


def _erase_vs_update(e: Instruction, ke: Key, u: Instruction, ku: Key):
    if e["index"] == u["index"]:
        return e, None  # update of a removed element
    _shift_size(u, -1)
    if u["index"] > e["index"]:
        u["index"] -= 1
    return e, u


def _update_vs_update(x: Instruction, kx: Key, y: Instruction, ky: Key):
    if x["index"] == y["index"]:
        return _last_writer(x, kx, y, ky)
    return x, y


def _element_kind(instr: Instruction) -> str:
    return "Update" if instr["op"] == "Update" else instr["op"]


_ELEMENT_RULES = {
    ("ArrayInsert", "ArrayInsert"): _insert_vs_insert,
    ("ArrayErase", "ArrayInsert"): _erase_vs_insert,
    ("ArrayErase", "ArrayErase"): _erase_vs_erase,
    ("ArrayInsert", "Update"): _insert_vs_update,
    ("ArrayErase", "Update"): _erase_vs_update,
    ("Update", "Update"): _update_vs_update,
}


def _merge_elements(x: Instruction, kx: Key, y: Instruction, ky: Key):
    """Two element ops (ArrayInsert, ArrayErase, Update with index) on the same list."""
    _check_same_size(x, y)
    pair = (_element_kind(x), _element_kind(y))
    if pair in _ELEMENT_RULES:
        return _ELEMENT_RULES[pair](x, kx, y, ky)
    ny, nx = _ELEMENT_RULES[pair[::-1]](y, ky, x, kx)
    return nx, ny


def _merge(x: Instruction, kx: Key, y: Instruction, ky: Key) -> tuple[Instruction | None, Instruction | None]:
    """Rebase x past y and y past x (both mutated); None marks a discarded instruction.

    Symmetric by construction: _merge(y, x) is _merge(x, y) swapped, which is what
    lets a peer's transform(entry, pending) agree with the server's transform(pending, entry).
    Contract `transform` relies on: only instructions on the same object interact, and
    a merge changes nothing but `index` / `prior_size` (ints) in place.
    """
    if (x["table"], x["object"]) != (y["table"], y["object"]):
        # Different objects are independent, including ArrayInsert of a link to X vs
        # EraseObject(X): the link survives and dangles (realm-core has no rule either).
        return x, y
    ox, oy = x["op"], y["op"]
    if ox == "EraseObject" and oy == "EraseObject":
        # realm-core: "We keep the most recent erase", so an erase + re-create of one pk in
        # a later changeset is not undone by an older concurrent erase.
        return (x, None) if _later(kx, ky) else (None, y)
    if ox == "EraseObject":
        return x, None  # erase wins over anything on that object, CreateObject included
    if oy == "EraseObject":
        return None, y
    if ox == "CreateObject" or oy == "CreateObject":
        return x, y  # CreateObject is idempotent and cannot disturb field ops
    if x["field"] != y["field"]:
        return x, y
    if ox == "Update" and "index" not in x:
        return _last_writer(x, kx, y, ky)  # validation: same non-list field => both plain Updates
    if ox == "Clear" and oy == "Clear":
        return (x, None) if _later(kx, ky) else (None, y)
    if ox == "Clear":
        return x, None  # nested Clear rule: element ops inside a cleared list are discarded
    if oy == "Clear":
        return None, y
    return _merge_elements(x, kx, y, ky)


def _rebuilt(changeset: Changeset, instructions: list[Instruction | None], dropped: bool = True) -> Changeset:
    """`changeset` with `instructions` (a list the caller gives up), less the discarded (None)
    ones; `dropped=False` says there are none."""
    out = dict(changeset)
    out["instructions"] = [instr for instr in instructions if instr is not None] if dropped else instructions
    return out


def transform(a: Changeset, b: Changeset, *, validate: bool = True,
              trace: Tracer | None = None) -> tuple[Changeset, Changeset]:
    """Rebase two concurrent changesets past each other: returns (a after b, b after a).

    apply(apply(S, b), a2) == apply(apply(S, a), b2) (TP1). Instruction lists meet in
    the usual OT grid: each instruction of a passes every surviving instruction of b,
    both updated as they go; a discarded instruction stops taking part and is dropped.
    Only instructions on the same object can interact (`_merge`), so each instruction
    meets just those, and is copied only when it does: a resync batch of thousands of
    instructions passes an unrelated upload without being copied. Inputs are not
    mutated. `validate=False` skips the format checks, for the emulator's own changesets.

    `trace`, when given, is called with one dict per instruction the merge discarded or
    whose index it moved: {"effect": "discarded" | "rewritten", "side": "a" | "b", "rule",
    "instruction" (as it was), "after" (rewritten only), "by" (the other instruction)}.
    The merge's own evidence: what explains a lost node.
    """
    if validate:
        _validate_changeset(a, "a")
        _validate_changeset(b, "b")
    a2, (b2,) = _pass(a, [b], True, None if trace is None else (lambda _n, record: trace(record)), cached=not validate)
    return a2, b2


def transform_past(a: Changeset, others: list[Changeset], *, want_others: bool = True,
                   trace: Callable[[int, dict[str, Any]], None] | None = None
                   ) -> tuple[Changeset, list[Changeset | None]]:
    """`a` transformed past each of `others` in turn, and each of them past `a` as it stood
    when they met: a device rebasing a download past its unacknowledged changes, a server
    an upload past the history entries it did not see. No format checks (the emulator's own
    changesets). `want_others=False` skips building the others' results (a server keeps
    only `a`'s). `trace(n, record)`: as `transform`'s, `n` the index in `others`.

    The same grid as `transform` applied pairwise, done once: `a`'s instructions are found
    through an index by object (built once per changeset) rather than scanned for every
    changeset met, and `a` is rebuilt once at the end, so a re-import batch of thousands
    of instructions costs per instruction that meets something, not per changeset met.
    A changeset nothing met is returned as it is (the same object).
    """
    return _pass(a, others, want_others, trace, cached=True)


def _pass(a: Changeset, others: list[Changeset], want_others: bool,
          trace: Callable[[int, dict[str, Any]], None] | None, *, cached: bool
          ) -> tuple[Changeset, list[Changeset | None]]:
    """`transform_past`. `cached=False` for changesets from outside the emulator (checked by
    `validate`), which a caller may still change: nothing about them is kept after the call."""
    entry = _compiled_entry(a) if cached else _uncached_entry(a)
    objects_of_a = entry[3]
    ka = (a["timestamp"], a["origin"])
    xs: list[Instruction | None] | None = None  # a's instructions once one is met; None = discarded
    x_own: set[int] = set()
    x_dropped = False
    positions = entry[4]
    out: list[Changeset | None] = []
    for n, b in enumerate(others):
        by_object = _meeting(objects_of_a, b, cached)
        if not by_object:
            out.append(b if want_others else None)  # nothing interacts: unchanged (never mutated by callers)
            continue
        if positions is None:
            positions = _positions(entry)
        if xs is None:
            xs = list(a["instructions"])
        ys: list[Instruction | None] = list(b["instructions"])
        y_own: set[int] = set()
        y_dropped = False
        kb = (b["timestamp"], b["origin"])
        tracer = None if trace is None else (lambda record, n=n: trace(n, record))
        if len(by_object) == 1:  # the usual case (two changesets meeting on one list): the grid is one column
            ((key, js),) = by_object.items()
            grid: Iterable[tuple[int, list[int]]] = ((i, js) for i in positions.get(key, ()))
        else:
            grid = sorted((i, js) for key, js in by_object.items() for i in positions.get(key, ()))
        for i, js in grid:
            x = xs[i]
            if x is None:
                continue
            met = False
            for j in js:
                y = ys[j]
                if y is None:
                    continue
                met = True
                if i not in x_own:
                    x = dict(x)  # type: ignore[arg-type]
                    x_own.add(i)
                if j not in y_own:
                    y = ys[j] = dict(y)
                    y_own.add(j)
                if tracer is None:
                    if x["op"] == "ArrayInsert" and y["op"] == "ArrayInsert" and x["field"] == y["field"]:
                        _check_same_size(x, y)  # what _merge does for this pair, without its dispatch
                        x, ys[j] = _insert_vs_insert(x, ka, y, kb)
                    else:
                        x, ys[j] = _merge(x, ka, y, kb)  # type: ignore[arg-type]
                else:
                    x_was, y_was = dict(x), dict(y)  # type: ignore[arg-type]
                    x, ys[j] = _merge(x, ka, y, kb)  # type: ignore[arg-type]
                    _note(tracer, "a", x_was, x, y_was)
                    _note(tracer, "b", y_was, ys[j], x_was)
                if ys[j] is None:
                    y_dropped = True
                if x is None:
                    x_dropped = True
                    break
            xs[i] = x
            if not met and len(by_object) == 1:
                break  # every instruction of b on this object is discarded: the rest of a's meet nothing
        out.append((_rebuilt(b, ys, y_dropped) if y_own else b) if want_others else None)
    if xs is None or not x_own:
        return a, out
    return _rebuilt(a, xs, x_dropped), out


def _meeting(objects_of_a: set[tuple[str, str]], b: Changeset, cached: bool) -> dict[tuple[str, str], list[int]]:
    """Positions in `b` of its instructions on an object of a's, by object: what the merge can pair."""
    instructions = b["instructions"]
    known = _COMPILED.get(id(b)) if cached else None
    if known is not None and known[0] is not b:
        known = None  # another changeset that had the same id
    if known is not None or (cached and len(instructions) > 32):  # look a's objects up in b's
        positions = _positions(known if known is not None else _compiled_entry(b))
        if len(objects_of_a) < len(positions):
            return {key: positions[key] for key in objects_of_a if key in positions}
        return {key: js for key, js in positions.items() if key in objects_of_a}
    by_object: dict[tuple[str, str], list[int]] = {}
    for j, y in enumerate(instructions):
        key = (y["table"], y["object"])
        if key in objects_of_a:
            listed = by_object.get(key)
            if listed is None:
                by_object[key] = [j]
            else:
                listed.append(j)
    return by_object


def _uncached_entry(changeset: Changeset) -> list[Any]:
    """A compiled entry's transform fields (objects, positions), not kept."""
    return [changeset, None, None, {(ins["table"], ins["object"]) for ins in changeset["instructions"]}, None]


def _positions(entry: list[Any]) -> dict[tuple[str, str], list[int]]:
    """Positions of a changeset's instructions by object, cached in its compiled entry."""
    positions = entry[4]
    if positions is None:
        positions = {}
        for i, ins in enumerate(entry[0]["instructions"]):
            key = (ins["table"], ins["object"])
            listed = positions.get(key)
            if listed is None:
                positions[key] = [i]
            else:
                listed.append(i)
        entry[4] = positions
    return positions


def _kebab(instr: Instruction) -> str:
    return _KEBAB[instr["op"]]


_KEBAB = {"CreateObject": "create-object", "EraseObject": "erase-object", "Update": "update",
          "ArrayInsert": "array-insert", "ArrayErase": "array-erase", "Clear": "clear"}


def rule_name(cause: Instruction, victim: Instruction) -> str:
    """The merge rule by which `cause` discarded or rewrote `victim`, e.g. "clear-vs-array-insert".

    Named cause first, as DESIGN.md's table does; an erased object takes everything on it
    with it, so that rule is "erase-object-vs-any" whatever the victim (but another erase)."""
    if cause["op"] == "EraseObject" and victim["op"] != "EraseObject":
        return "erase-object-vs-any"
    return f"{_kebab(cause)}-vs-{_kebab(victim)}"


def _note(trace: Tracer, side: str, before: Instruction, after: Instruction | None, other: Instruction) -> None:
    """Report what one merge did to one side: discarded it, or moved its index."""
    if after is None:
        trace({"effect": "discarded", "side": side, "rule": rule_name(other, before),
               "instruction": before, "by": other})
    elif after.get("index") != before.get("index"):
        trace({"effect": "rewritten", "side": side, "rule": rule_name(other, before),
               "instruction": before, "after": dict(after), "by": other})


def rebase(changeset: Changeset, entries: list[Changeset], *, validate: bool = True,
           trace: Callable[[int, dict[str, Any]], None] | None = None) -> Changeset:
    """`changeset` transformed past each of `entries` in turn (a server integrating an upload).

    `trace(n, record)`: as `transform`'s, with `n` the index in `entries` of the entry met
    (side "a" is `changeset`, side "b" that entry)."""
    if validate:
        _validate_changeset(changeset, "changeset")
        for n, entry in enumerate(entries):
            _validate_changeset(entry, f"entries[{n}]")
    return _pass(changeset, entries, False, trace, cached=not validate)[0]


def converge(state: State, changesets: list[Changeset]) -> State:
    """The visible state every peer reaches once the server has integrated `changesets`.

    Each changeset is based on `state` and concurrent with the others; the server
    integrates them in the given order, each transformed against the history entries
    integrated before it. `state` and `changesets` are not mutated.
    """
    _validate_state(state)
    if not isinstance(changesets, list):
        raise ValueError(f"changesets must be a list, got {type(changesets).__name__}")
    for n, changeset in enumerate(changesets):
        _validate_changeset(changeset, f"changesets[{n}]")
    history: list[Changeset] = []
    for changeset in changesets:
        incoming = changeset
        for entry in history:
            incoming, _ = transform(incoming, entry)
        history.append(incoming)
    final = copy.deepcopy(state)
    for entry in history:
        apply(final, entry)
    return visible(final)
