"""lockdep's search for held locks inside a freed object: fields, containers, first path."""

from __future__ import annotations

import ksync
from ksync.checkers.lockdep import _contained


class Slotted:
    __slots__ = ("lock", "children", "__weakref__")

    def __init__(self, lock, children):
        self.lock = lock
        self.children = children


def test_a_lock_deep_in_a_long_list_field_is_found_with_its_index():
    lk = ksync.SpinLock("child->lock")
    children = [None] * 512
    children[300] = lk
    obj = Slotted(object(), children)
    assert _contained(obj, "page", {id(lk)}) == {id(lk): "page.children[300]"}


def test_dict_fields_tuple_fields_and_the_object_itself_are_searched():
    class Plain:
        pass
    a, b, c = ksync.SpinLock("a"), ksync.Mutex("b"), ksync.SpinLock("c")
    obj = Plain()
    obj.by_name = {"x": a}
    obj.pair = (None, b)
    got = _contained(obj, "vm", {id(a), id(b), id(obj)})
    assert got == {id(obj): "vm", id(a): "vm.by_name['x']", id(b): "vm.pair[1]"}
    assert _contained(obj, "vm", {id(c)}) == {}


def test_the_first_path_to_a_lock_wins():
    lk = ksync.SpinLock("shared")
    obj = Slotted(lk, [lk])
    assert _contained(obj, "o", {id(lk)}) == {id(lk): "o.lock"}


def test_objects_two_levels_down_are_not_searched():
    lk = ksync.SpinLock("deep")
    obj = Slotted(None, [[lk]])
    assert _contained(obj, "o", {id(lk)}) == {}
