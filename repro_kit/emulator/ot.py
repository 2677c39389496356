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
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from repro_kit._mypyc import mypyc_attr

__all__ = ["Changeset", "Effects", "Frozen", "owned", "LIST_FIELDS", "COLUMN_DEFAULTS", "rule_name", "validate",
           "order_key", "apply", "apply_trusted", "objects", "kept_objects", "owner_candidates", "subset", "transform",
           "transform_past", "rebase", "visible", "converge", "root_effects", "release"]

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
ChangesetDict = dict[str, Any]
State = dict[str, dict[str, dict[str, Any]]]
Key = tuple[int, int]
#: A public function's input it checks itself (ValueError naming the problem): any value may come.
#: (So typed, a compiled build, `repro_kit._compiled`, leaves the check to the function as well.)
Checked = Any
Tracer = Callable[[dict[str, Any]], None]
#: What may change which object is an owner's root: (erases an object?, pks that may be a root
#: after the changeset, pks whose isRoot it only sets false).
Effects = tuple[bool, frozenset[str], frozenset[str]]


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
        _validate_array_op(instr, op, where)


def _validate_array_op(instr: Instruction, op: str, where: str) -> None:
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


def order_key(changeset: Checked) -> Key:
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
        index: int = instr.get("index", 0)
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


# Compiled form of a changeset: each instruction dict read once into a tuple, a CreateObject
# followed by plain Updates of the same object merged into one step. Codes:
_SET, _SET_ELEMENT, _INSERT, _CREATE, _ERASE, _ARRAY_ERASE, _CLEAR, _INSERT_RUN = range(8)
_TRUE, _FALSE, _OWNER = 1, 2, 4  # what a changeset's updates set of an object's isRoot and owner_id


class _Compiled:
    """What one changeset's peers share: `steps` (what `apply_trusted` runs) and the index of the
    first instruction of each (`starts`), `effects` (erases an object?, pks it may make a root,
    pks whose isRoot it only sets false: `apply_trusted`), `objects` (the (table, pk) it touches)
    and, on first need, `positions` (its instructions' indices by object). A rebased changeset's
    (`_derived`) may keep its source's effects and objects: a rebase only drops instructions or
    moves their indices, so they bound its own, and every use of them is exact with a bound (a
    root looked for again, an object looked up in vain)."""

    __slots__ = ("effects", "objects", "positions", "starts", "steps")
    steps: list[tuple[Any, ...]]
    starts: list[int]
    effects: Effects
    objects: set[tuple[str, str]]
    positions: dict[tuple[str, str], list[int]] | None

    def __init__(self, steps: list[tuple[Any, ...]], starts: list[int]) -> None:
        self.steps, self.starts = steps, starts
        self.positions = None
        self.effects, self.objects = _read_steps(steps)


def _read_steps(steps: list[tuple[Any, ...]]) -> tuple[Effects, set[tuple[str, str]]]:
    """(effects, objects) of a changeset, read from its steps (fewer than its instructions: a
    create holds its fields)."""
    erases = False
    root_fields: dict[str, int] = {}  # pk -> what its isRoot/owner_id updates set (_TRUE | _FALSE | _OWNER)
    objects: set[tuple[str, str]] = set()
    for code, table, pk, field, _index, value in steps:
        objects.add((table, pk))
        if code == _CREATE:
            for name, val, _container in value:
                if name == "isRoot" or name == "owner_id":
                    root_fields[pk] = root_fields.get(pk, 0) | _root_bit(name, val)
        elif code == _SET:
            if field == "isRoot" or field == "owner_id":
                root_fields[pk] = root_fields.get(pk, 0) | _root_bit(field, value)
        elif code == _ERASE:
            erases = True
    # may be a root after: isRoot set true, or its owner set and isRoot left as it was; the
    # others only ever set isRoot false (they matter only if one was the root)
    rooting = frozenset(pk for pk, sets in root_fields.items() if sets & _TRUE or sets == _OWNER)
    unrooting = frozenset(pk for pk in root_fields if pk not in rooting)
    return (erases, rooting, unrooting), objects


def _root_bit(field: str, value: Any) -> int:
    return _OWNER if field == "owner_id" else _TRUE if value else _FALSE


def _derived(source: _Compiled, old: Sequence[Instruction], new: list[Instruction | None], dropped: bool) -> _Derived:
    """The compiled form of `old` rebased into `new` (aligned with `old`: None where an instruction
    was discarded, another dict where the merge moved it; `dropped` whether one was), from
    `source`, `old`'s, its steps made on first need (`_Derived`)."""
    return _Derived(source, old, new, dropped)


class _Derived(_Compiled):
    """A rebased changeset's compiled form, whose steps are made from its source's when first
    read: a step none of whose instructions changed is taken as it is, the others compiled
    again. The same steps in effect as compiling the rebased list whole (a CreateObject's fields
    applied in one step or several leave the same object, keys in the same order). Most rebased
    changesets are a device's own, never applied again there: they never need steps."""

    __slots__ = ("source",)
    __deletable__ = ("source",)  # mypyc: `make` deletes it
    source: tuple[_Compiled, Sequence[Instruction], list[Instruction | None]]

    def __init__(self, source: _Compiled, old: Sequence[Instruction], new: list[Instruction | None],
                 dropped: bool) -> None:
        """`_derived` (an `__init__` of its own rather than `__new__` alone: a mypyc-compiled
        class's `__new__` runs `__init__`)."""
        erases, rooting, unrooting = source.effects
        # A merge that only moved indices leaves the effects as they were. One that dropped an isRoot
        # update may have kept an owner_id one: every pk the source may root or unroot may then be a root.
        self.effects = (erases, rooting | unrooting, frozenset()) if dropped and unrooting else source.effects
        self.objects = source.objects
        self.positions = None if dropped else source.positions  # indices stay where nothing was dropped
        self.source = (source, old, new)

    def __getattr__(self, name: str) -> Any:  # only for a slot not set yet: `steps`, `starts`
        if name not in ("steps", "starts"):
            raise AttributeError(name)
        self.make()
        return self.steps if name == "steps" else self.starts

    def make(self) -> None:
        """Make the steps from the source's."""
        source, old, new = self.source
        steps: list[tuple[Any, ...]] = []
        starts: list[int] = []
        source_steps = _steps_of(source)
        bounds = [*source.starts, len(old)]
        at = 0
        for k, step in enumerate(source_steps):
            begin, end = bounds[k], bounds[k + 1]
            first = new[begin]
            if first is old[begin] and (end - begin == 1
                                        or all(map(operator.is_, new[begin + 1:end], old[begin + 1:end]))):
                steps.append(step)
                starts.append(at)
                at += end - begin
                continue
            if end - begin == 1 and first is not None and step[0] == _INSERT:  # an insert the merge moved
                steps.append((_INSERT, step[1], step[2], step[3], first["index"], step[5]))
                starts.append(at)
                at += 1
                continue
            part = [ins for ins in new[begin:end] if ins is not None]
            more, more_starts = _compile(part)
            steps += more
            starts += [at + i for i in more_starts]
            at += len(part)
        self.steps, self.starts = steps, starts
        del self.source  # made: what it was made from may go


# A Python class in a mypyc build (a compiled dict subclass has no attributes: `compiled` needs its slot),
# defined after `_Compiled`, its annotation (mypyc sets a Python class's annotations to the classes).
@mypyc_attr(native_class=False)
class Changeset(dict[str, Any]):
    """A changeset the emulator made (a dict like any other) that keeps what is computed about
    it once for every peer that applies or merges it: its compiled steps, root effects and
    objects (`_Compiled`). Its instructions must not change once it has been applied or
    merged; a plain dict is compiled afresh on each use, and nothing about it is kept."""

    __slots__ = ("compiled",)
    compiled: _Compiled


def _steps_of(compiled: _Compiled) -> list[tuple[Any, ...]]:
    """`compiled.steps`, a `_Derived`'s made if not yet: in Python `__getattr__` makes them; a
    mypyc-compiled class reads its slots natively, without `__getattr__`, and raises AttributeError."""
    try:
        return compiled.steps
    except AttributeError:
        assert isinstance(compiled, _Derived)
        compiled.make()
        return compiled.steps


def _compiled(changeset: ChangesetDict) -> _Compiled:
    """The changeset's compiled form: kept on an emulator `Changeset`, made afresh for a plain dict."""
    try:
        return changeset.compiled  # type: ignore[attr-defined]
    except AttributeError:
        entry = _Compiled(*_compile(changeset["instructions"]))
        if type(changeset) is Changeset:
            changeset.compiled = entry
        return entry


class Frozen(dict[str, Any]):
    """An object as a CreateObject made it, shared by every state that applied that step (a
    download reaches every device: 100 devices hold one object, not 100 copies). No one changes
    it: the applier takes a state's own copy first (`owned`), the first time a step would change
    it there. A copy of it (`copy.copy`, `copy.deepcopy`, pickle) is a plain dict; one deep copy
    (or pickle) of several states together keeps their sharing, as those copiers keep identity
    (its plain dicts are then shared by the copied states): to change copies apart, copy each
    state on its own."""

    __slots__ = ()

    def __copy__(self) -> dict[str, Any]:
        return _thawed(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (_thawed(self),)


_ATOMS = (str, int, float, bool, type(None))


def _thawed(obj: dict[str, Any]) -> dict[str, Any]:
    """A plain dict with the values of `obj`, its lists and containers copied."""
    return {name: (_copied(value) if isinstance(value, (list, dict)) else value) for name, value in obj.items()}


def _copied(value: list[Any] | dict[str, Any]) -> Any:
    """`copy.deepcopy(value)`, in one step for a list of atoms (a list of links)."""
    if type(value) is list and all(type(x) in _ATOMS for x in value):
        return value[:]
    return copy.deepcopy(value)


def _unchanged(obj: dict[str, Any], assigned: tuple[tuple[str, Any, bool], ...]) -> bool:
    """Whether assigning these (field, value, container) leaves `obj` as it is: each field there
    already, holding an atom equal to the value and of its type (True is not 1 here)."""
    for name, val, container in assigned:
        if container or name not in obj:
            return False
        cur = obj[name]
        if cur is not val and (type(cur) is not type(val) or cur != val):
            return False
    return True


def owned(objects: dict[str, Any], pk: str) -> dict[str, Any]:
    """`objects[pk]` as this state's own object, to change in place (a shared `Frozen` one copied
    first). For code that edits a state outside `apply` (a replay's placeholders)."""
    obj = objects[pk]
    if type(obj) is Frozen:
        obj = objects[pk] = _thawed(obj)
    return obj


def subset(changeset: ChangesetDict, keep: Callable[[str], bool]) -> ChangesetDict:
    """`changeset` less its instructions on the objects `keep(pk)` refuses (what one subscription
    sees of it). An emulator `Changeset`'s compiled form is kept: each step is one object's, so
    the subset's steps are the kept ones, shared (a re-import batch is compiled once, not once
    per owner whose devices it reaches)."""
    instructions = changeset["instructions"]
    source = getattr(changeset, "compiled", None) if type(changeset) is Changeset else None
    if source is None:
        return Changeset(changeset, instructions=[ins for ins in instructions if keep(ins["object"])])
    steps: list[tuple[Any, ...]] = []
    starts: list[int] = []
    kept: list[Instruction] = []
    source_steps = _steps_of(source)
    bounds = [*source.starts, len(instructions)]
    for k, step in enumerate(source_steps):
        if keep(step[2]):
            starts.append(len(kept))
            steps.append(step)
            kept += instructions[bounds[k]:bounds[k + 1]]
    out = Changeset(changeset, instructions=kept)
    out.compiled = _Compiled(steps, starts)
    return out


def _frozen(pk: str, assigned: tuple[tuple[str, Any, bool], ...]) -> Frozen:
    """A created object as the instructions build it (pk, defaults, empty lists, then the fields
    in order), frozen for every state that applies the step. Made when a state first lacks the
    object: a re-import's CreateObject of objects every state has never needs one."""
    template: dict[str, Any] = {_PK_FIELD: pk, **COLUMN_DEFAULTS}
    for name in _SORTED_LIST_FIELDS:
        template[name] = []
    for name, value, container in assigned:
        template[name] = copy.deepcopy(value) if container else value
    return Frozen(template)


def _compile(instructions: Sequence[Instruction]) -> tuple[list[tuple[Any, ...]], list[int]]:
    """(code, table, pk, field, index, value) per step, and the index of each step's first
    instruction; a CreateObject followed by plain Updates of the same object becomes one step
    carrying those fields, in their order, and ArrayInserts at consecutive indices of one list one
    step inserting them as a slice (where each insert lands: past the end too, where both append)."""
    out: list[tuple[Any, ...]] = []
    starts: list[int] = []
    n = len(instructions)
    i = 0
    while i < n:
        starts.append(i)
        instr = instructions[i]
        op, table, pk = instr["op"], instr["table"], instr["object"]
        if op == "CreateObject":
            step, i = _create_step(instructions, i)
            out.append(step)
            continue
        if op == "ArrayInsert":
            step, i = _insert_step(instructions, i)
            out.append(step)
            continue
        i += 1
        if op == "Update":
            if "index" in instr:
                out.append((_SET_ELEMENT, table, pk, instr["field"], instr["index"], instr["value"]))
            else:
                out.append((_SET, table, pk, instr["field"], None, instr["value"]))
        elif op == "EraseObject":
            out.append((_ERASE, table, pk, None, None, None))
        elif op == "ArrayErase":
            out.append((_ARRAY_ERASE, table, pk, instr["field"], instr["index"], None))
        else:  # Clear
            out.append((_CLEAR, table, pk, instr["field"], None, None))
    return out, starts


def _create_step(instructions: Sequence[Instruction], i: int) -> tuple[tuple[Any, ...], int]:
    """The step of the CreateObject at `i` and the plain Updates of its object after it; the next index."""
    table, pk = instructions[i]["table"], instructions[i]["object"]
    fields: list[tuple[str, Any, bool]] = []
    i += 1
    while i < len(instructions):
        nxt = instructions[i]
        if nxt["op"] != "Update" or "index" in nxt or nxt["object"] != pk or nxt["table"] != table:
            break
        value = nxt["value"]
        fields.append((nxt["field"], value, isinstance(value, (list, dict))))
        i += 1
    # [the last shared object found unchanged, the object made (`_frozen`)], and the fields
    return (_CREATE, table, pk, [None, None], None, tuple(fields)), i


def _insert_step(instructions: Sequence[Instruction], i: int) -> tuple[tuple[Any, ...], int]:
    """The step of the ArrayInsert at `i` and those at the next indices of its list after it; the next index."""
    instr = instructions[i]
    table, pk, field, index = instr["table"], instr["object"], instr["field"], instr["index"]
    values = [instr["value"]]
    i += 1
    while i < len(instructions):
        nxt = instructions[i]
        if (nxt["op"] != "ArrayInsert" or nxt["object"] != pk or nxt["field"] != field
                or nxt["index"] != index + len(values) or nxt["table"] != table):
            break
        values.append(nxt["value"])
        i += 1
    if len(values) == 1:
        return (_INSERT, table, pk, field, index, values[0]), i
    return (_INSERT_RUN, table, pk, field, index, values), i


def release(changeset: ChangesetDict) -> None:
    """Forget what is kept about `changeset` (its compiled form), to be computed again if it is
    used again: for a changeset its peers have all applied (what bounds the model's memory)."""
    if type(changeset) is Changeset and hasattr(changeset, "compiled"):
        del changeset.compiled


def apply_trusted(state: State, changeset: ChangesetDict) -> Effects:
    """`apply(state, changeset, validate=False)`: the one applier (every device applies every
    download, so this is the emulator's innermost loop), running the changeset's compiled steps
    in place, in order. Ops on missing objects are ignored. A created object goes in shared
    (`Frozen`); a step that changes one takes the state's own copy first.

    Returns what may change which object is an owner's root: (erases an object?, pks that may
    be a root after it, pks whose isRoot it only sets false), kept with the compiled form for
    every device that applies it."""
    try:
        compiled = changeset.compiled  # type: ignore[attr-defined]  # (`_compiled`, inlined: the hot path)
    except AttributeError:
        compiled = _compiled(changeset)
    try:
        steps = compiled.steps
    except AttributeError:  # a `_Derived`'s, not made yet, in a mypyc-compiled build (`_steps_of`)
        steps = _steps_of(compiled)
    for code, table, pk, field, index, value in steps:
        objects = state.get(table)
        if objects is None:
            objects = state[table] = {}
        obj = objects.get(pk)
        if code == _CREATE:  # `field`: [the last shared object found unchanged, the object made], `value`: the fields
            if obj is None:  # created: the step's own object, shared
                made = field[1]
                if made is None:
                    made = field[1] = _frozen(pk, value)
                objects[pk] = made
            elif obj is not field[0]:  # (the object this step last found unchanged: every device sharing it)
                _create_existing(objects, pk, obj, field, value)
            continue
        if obj is None:
            continue
        if code == _ERASE:
            del objects[pk]
            continue
        if type(obj) is Frozen:
            obj = objects[pk] = _thawed(obj)
        if code == _INSERT:
            lst = obj.get(field)
            if lst is None:
                lst = obj[field] = []
            lst.insert(index, value)
        else:
            _change(obj, code, field, index, value)
    return compiled.effects


def _create_existing(objects: dict[str, Any], pk: str, obj: dict[str, Any], cell: list[Any],
                     assigned: tuple[tuple[str, Any, bool], ...]) -> None:
    """A CreateObject of an object the state has: its fields assigned (in the state's own copy)."""
    if type(obj) is Frozen:
        if obj is cell[0] or obj is cell[1] or _unchanged(obj, assigned):  # a re-import's, of an object as it is
            cell[0] = obj  # Frozen objects never change: every device sharing it is answered at once
            return
        obj = objects[pk] = _thawed(obj)
    for name, val, container in assigned:
        obj[name] = copy.deepcopy(val) if container else val


def _change(obj: dict[str, Any], code: int, field: str, index: Any, value: Any) -> None:
    """The field and list steps other than a single insert, on the state's own object."""
    if code == _SET:
        obj[field] = copy.deepcopy(value) if isinstance(value, (list, dict)) else value
    elif code == _INSERT_RUN:
        lst = obj.get(field)
        if lst is None:
            lst = obj[field] = []
        lst[index:index] = value
    elif code == _SET_ELEMENT:
        obj[field][index] = value
    elif code == _ARRAY_ERASE:
        del obj[field][index]
    else:  # Clear
        obj[field] = []


def objects(changeset: ChangesetDict) -> set[tuple[str, str]]:
    """The (table, pk) of every object `changeset` touches (kept with its compiled form; a rebased
    changeset's may name more, never fewer)."""
    return _compiled(changeset).objects


def owner_candidates(changeset: ChangesetDict) -> list[str]:
    """The pks whose owner `changeset` may set, read from its steps (fewer than its instructions):
    those it creates, and those whose owner_id it updates (in order; one may come twice)."""
    return [pk for code, _table, pk, field, _index, _value in _steps_of(_compiled(changeset))
            if code == _CREATE or field == "owner_id"]


def kept_objects(changeset: ChangesetDict) -> set[tuple[str, str]] | None:
    """Exactly the (table, pk) `changeset` touches when its compiled form is kept and was not made
    by a rebase (a device's write: compiled when the device applied it); None otherwise, for the
    caller to read the instructions rather than compile them for this alone."""
    compiled = getattr(changeset, "compiled", None)
    return compiled.objects if type(compiled) is _Compiled else None


def root_effects(changeset: ChangesetDict) -> Effects:
    """What `apply_trusted` returns, for a changeset applied otherwise (a device's own write)."""
    return _compiled(changeset).effects


def apply(state: Checked, changeset: Checked, *, validate: bool = True) -> State:
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
    apply_trusted(state, changeset)
    return state


def visible(state: Checked) -> State:
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
    pair = (x["op"], y["op"])
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
    if ox == "ArrayInsert" and oy == "ArrayInsert" and x["field"] == y["field"]:
        _check_same_size(x, y)  # the commonest pair (appends to one list), where the rules below lead
        return _insert_vs_insert(x, kx, y, ky)
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


def _rebuilt(changeset: ChangesetDict, instructions: list[Instruction | None], dropped: bool = True,
             made: bool = False) -> Changeset:
    """`changeset` with `instructions` (a list the caller gives up), less the discarded (None)
    ones; `dropped=False` says there are none. Its compiled form is derived from the changeset's
    (if it has one kept), its steps made at once if `made`, else on first need."""
    out = Changeset(changeset)
    source = getattr(changeset, "compiled", None) if type(changeset) is Changeset else None
    if source is not None:
        derived = out.compiled = _derived(source, changeset["instructions"], instructions, dropped)
        if made:
            derived.make()
    out["instructions"] = [instr for instr in instructions if instr is not None] if dropped else instructions
    return out


class _Silent:
    """The tracer of an untraced pass: its `merge` is `_merge` itself, recording nothing."""

    __slots__ = ()

    def meeting(self, n: int) -> _Silent:
        """The tracer for the pass's `n`th changeset."""
        return self

    def merger(self) -> Callable[[Instruction, Key, Instruction, Key], tuple[Instruction | None, Instruction | None]]:
        """The merge to run: `_merge` itself here (a method, not a class attribute: a mypyc-compiled
        class reads a class attribute as an instance field, which would hide `_Recorder.merge`)."""
        return _merge


class _Recorder(_Silent):
    """The tracer of a traced pass: `_merge`, and its effect on either side as `_note` reports
    it, told to `trace(n, record)` for the `n`th changeset met."""

    __slots__ = ("n", "trace")

    def __init__(self, trace: Callable[[int, dict[str, Any]], None], n: int = 0) -> None:
        self.trace = trace
        self.n = n

    def meeting(self, n: int) -> _Recorder:
        return _Recorder(self.trace, n)

    def merge(self, x: Instruction, kx: Key, y: Instruction, ky: Key
              ) -> tuple[Instruction | None, Instruction | None]:
        x_was, y_was = dict(x), dict(y)
        x2, y2 = _merge(x, kx, y, ky)
        _note(self._told, "a", x_was, x2, y_was)
        _note(self._told, "b", y_was, y2, x_was)
        return x2, y2

    def _told(self, record: dict[str, Any]) -> None:
        self.trace(self.n, record)

    def merger(self) -> Callable[[Instruction, Key, Instruction, Key], tuple[Instruction | None, Instruction | None]]:
        return self.merge


_SILENT = _Silent()


def _tracer(trace: Callable[[int, dict[str, Any]], None] | None) -> _Silent:
    return _SILENT if trace is None else _Recorder(trace)


def transform(a: Checked, b: Checked, *, validate: bool = True,
              trace: Tracer | None = None) -> tuple[ChangesetDict, ChangesetDict]:
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
    a2, (b2,) = _pass(a, [b], True, _tracer(None if trace is None else (lambda _n, record: trace(record))))
    return a2, b2  # type: ignore[return-value]


def transform_past(a: ChangesetDict, others: list[ChangesetDict], *, want_others: bool = True,
                   trace: Callable[[int, dict[str, Any]], None] | None = None
                   ) -> tuple[ChangesetDict, list[ChangesetDict | None]]:
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
    return _pass(a, others, want_others, _tracer(trace))


def _pass(a: ChangesetDict, others: list[ChangesetDict], want_others: bool, tracer: _Silent
          ) -> tuple[ChangesetDict, list[ChangesetDict | None]]:
    """`transform_past`, traced or not by `tracer` (the same merge either way)."""
    compiled = _compiled(a)
    ka = (a["timestamp"], a["origin"])
    xs: list[Instruction | None] | None = None  # a's instructions once one is met; None = discarded
    x_own: set[int] = set()
    x_dropped = False
    out: list[ChangesetDict | None] = []
    for n, b in enumerate(others):
        by_object = _meeting(compiled.objects, b)
        if not by_object:
            out.append(b if want_others else None)  # nothing interacts: unchanged (never mutated by callers)
            continue
        if xs is None:
            xs = list(a["instructions"])
        ys: list[Instruction | None] = list(b["instructions"])
        y_own: set[int] = set()
        dropped = _meet(xs, x_own, ys, y_own, (ka, (b["timestamp"], b["origin"])),
                        _cells(_positions(compiled, a), by_object), len(by_object) == 1, tracer.meeting(n).merger())
        x_dropped = x_dropped or dropped[0]
        out.append((_rebuilt(b, ys, dropped[1]) if y_own else b) if want_others else None)
    if xs is None or not x_own:
        return a, out
    return _rebuilt(a, xs, x_dropped, made=True), out  # made now: what a pass rebases is applied next


def _cells(positions: dict[tuple[str, str], list[int]],
           by_object: dict[tuple[str, str], list[int]]) -> Iterable[tuple[int, list[int]]]:
    """(position in a, positions in b it meets), in a's order."""
    if len(by_object) == 1:  # the usual case (two changesets meeting on one list): the grid is one column
        ((key, js),) = by_object.items()
        return ((i, js) for i in positions.get(key, ()))
    return sorted((i, js) for key, js in by_object.items() for i in positions.get(key, ()))


def _meet(xs: list[Instruction | None], x_own: set[int], ys: list[Instruction | None], y_own: set[int],
          keys: tuple[Key, Key], cells: Iterable[tuple[int, list[int]]], one_object: bool,
          merge: Callable[[Instruction, Key, Instruction, Key], tuple[Instruction | None, Instruction | None]]
          ) -> tuple[bool, bool]:
    """One changeset of the pass met by `a`: instructions copied when first met (`x_own`, `y_own`),
    merged pairwise in place (None where discarded); returns whether each side lost one."""
    ka, kb = keys
    x_dropped = y_dropped = False
    for i, js in cells:
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
                x = dict(x)
                x_own.add(i)
            if j not in y_own:
                y = dict(y)
                y_own.add(j)
            x, y = merge(x, ka, y, kb)
            ys[j] = y
            if y is None:
                y_dropped = True
            if x is None:
                x_dropped = True
                break
        xs[i] = x
        if not met and one_object:
            break  # every instruction of b on this object is discarded: the rest of a's meet nothing
    return x_dropped, y_dropped


def _meeting(objects_of_a: set[tuple[str, str]], b: ChangesetDict) -> dict[tuple[str, str], list[int]]:
    """Positions in `b` of its instructions on an object of a's, by object: what the merge can pair."""
    instructions = b["instructions"]
    compiled: _Compiled | None = getattr(b, "compiled", None)
    if compiled is not None:  # b's index, kept with it: a history entry or a pending change is met again and again
        positions = _positions(compiled, b)
    elif len(instructions) > 32:
        positions = _index(instructions)
    else:
        return _index(instructions, objects_of_a)
    if len(objects_of_a) < len(positions):
        return {key: positions[key] for key in objects_of_a if key in positions}
    return {key: js for key, js in positions.items() if key in objects_of_a}


def _positions(compiled: _Compiled, changeset: ChangesetDict) -> dict[tuple[str, str], list[int]]:
    """Positions of a changeset's instructions by object, kept in its compiled form."""
    positions = compiled.positions
    if positions is None:
        positions = compiled.positions = _index(changeset["instructions"])
    return positions


def _index(instructions: Sequence[Instruction], only: set[tuple[str, str]] | None = None
           ) -> dict[tuple[str, str], list[int]]:
    """Positions of `instructions` by object (of the objects in `only`, if given)."""
    positions: dict[tuple[str, str], list[int]] = {}
    for i, ins in enumerate(instructions):
        key = (ins["table"], ins["object"])
        if only is not None and key not in only:
            continue
        listed = positions.get(key)
        if listed is None:
            positions[key] = [i]
        else:
            listed.append(i)
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


def rebase(changeset: Checked, entries: Checked, *, validate: bool = True,
           trace: Callable[[int, dict[str, Any]], None] | None = None) -> ChangesetDict:
    """`changeset` transformed past each of `entries` in turn (a server integrating an upload).

    `trace(n, record)`: as `transform`'s, with `n` the index in `entries` of the entry met
    (side "a" is `changeset`, side "b" that entry)."""
    if validate:
        _validate_changeset(changeset, "changeset")
        for n, entry in enumerate(entries):
            _validate_changeset(entry, f"entries[{n}]")
    return _pass(changeset, entries, False, _tracer(trace))[0]


def converge(state: Checked, changesets: Checked) -> State:
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
    history: list[ChangesetDict] = []
    for changeset in changesets:
        incoming = changeset
        for entry in history:
            incoming, _ = transform(incoming, entry)
        history.append(incoming)
    final = copy.deepcopy(state)
    for entry in history:
        apply(final, entry)
    return visible(final)
