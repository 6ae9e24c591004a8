"""Page classification per kernel era, on struct page arrays built here.

Each rule set is the VMCOREINFO a kernel of that era exports (values from the 5.10, 6.1,
6.12 and 7.x lab kernels); each page is built to be one kind of page in that era's
encoding (flag bits, ``mapping``'s anon bit, ``_mapcount`` page types, compound heads)
and the expected class is what makedumpfile's ``__exclude_unnecessary_pages`` gives it.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdumpy.collect import classify as classify_module
from kdumpy.collect.classify import classify
from kdumpy.collect.classify_np import classify_numpy
from kdumpy.collect.pageclass import (
    CACHE,
    CACHE_PRIVATE,
    FREE,
    HWPOISON,
    KEEP,
    OFFLINE,
    USER,
    Pending,
)
from kdumpy.collect.pagerules import PageRules
from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

STRUCT_PAGE = 64
OFF = {"flags": 0, "compound_head": 8, "mapping": 24, "private": 40, "_mapcount": 48}
KERNEL_ADDRESS = 0xFFFF888012345000  # an address_space: page cache

COMMON = {
    "SIZE(page)": 64, "OFFSET(page.flags)": 0, "OFFSET(page.mapping)": 24,
    "OFFSET(page._mapcount)": 48, "OFFSET(page.private)": 40, "LENGTH(zone.free_area)": 11,
}  # fmt: skip
ERAS = {
    "5.10": {**COMMON, "OFFSET(page.compound_head)": 8, "OFFSET(page.compound_dtor)": 16,
             "OFFSET(page.compound_order)": 17, "NUMBER(PG_lru)": 4, "NUMBER(PG_private)": 13,
             "NUMBER(PG_swapcache)": 10, "NUMBER(PG_swapbacked)": 19, "NUMBER(PG_slab)": 9,
             "NUMBER(PG_head_mask)": 1 << 16, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)": -129,
             "NUMBER(HUGETLB_PAGE_DTOR)": 2, "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)": -257},
    "6.12": {**COMMON, "OFFSET(page.compound_head)": 8, "NUMBER(PG_lru)": 5,
             "NUMBER(PG_private)": 14, "NUMBER(PG_swapcache)": 10, "NUMBER(PG_swapbacked)": 17,
             "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)": -184549376, "NUMBER(PG_hwpoison)": 20,
             "NUMBER(PG_head_mask)": 64, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)": -268435456,
             "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)": -201326592,
             "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)": -251658240},
    "7": {**COMMON, "OFFSET(page.compound_info)": 8, "NUMBER(PG_lru)": 5,
          "NUMBER(PG_private)": 14, "NUMBER(PG_swapcache)": 10, "NUMBER(PG_swapbacked)": 17,
          "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)": -184549376, "NUMBER(PG_hwpoison)": 21,
          "NUMBER(PG_head_mask)": 64, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)": -268435456,
          "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)": -201326592,
          "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)": -251658240,
          "NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)": -150994944},
}  # fmt: skip


@pytest.fixture(autouse=True, params=["native", "numpy"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on the C classifier (when built) and on the numpy one."""
    if request.param == "numpy":
        monkeypatch.setattr(classify_module, "_native_classify", None)
        monkeypatch.setattr(classify_module, "_numpy_classify", classify_numpy)
    elif classify_module._native_classify is None:
        pytest.skip("kdumpy.collect._pagepack is not built")
    return str(request.param)


def rules_for(era: str) -> PageRules:
    text = "".join(f"{k}={v}\n" for k, v in ERAS[era].items())
    return PageRules.from_vmcoreinfo(VmcoreInfo(text, "test"))


class Pages:
    """``n`` struct pages (+1 for the tail read past the end) in one era's encoding."""

    def __init__(self, era: str, n: int) -> None:
        self.era, self.info = era, ERAS[era]
        self.raw = np.zeros((n + 1, STRUCT_PAGE), dtype=np.uint8)
        self.expected = np.full(n, KEEP, dtype=np.uint8)

    def _put(self, pfn: int, field: str, value: int, fmt: str = "<u8") -> None:
        size = np.dtype(fmt).itemsize
        self.raw[pfn, OFF[field] : OFF[field] + size] = np.frombuffer(
            np.array([value], dtype=fmt).tobytes(), dtype=np.uint8
        )

    def _flag(self, name: str) -> int:
        return 1 << int(self.info[f"NUMBER(PG_{name})"])

    def _type(self, name: str) -> int:
        return int(self.info[f"NUMBER(PAGE_{name}_MAPCOUNT_VALUE)"]) & 0xFFFFFFFF

    def free(self, pfn: int, order: int) -> None:
        self._put(pfn, "_mapcount", self._type("BUDDY"), "<u4")
        self._put(pfn, "private", order)
        self.expected[pfn : pfn + (1 << order)] = FREE

    def cache(self, pfn: int, private: bool = False) -> None:
        self._put(pfn, "flags", self._flag("lru") | (self._flag("private") if private else 0))
        self._put(pfn, "mapping", KERNEL_ADDRESS)
        self.expected[pfn] = CACHE_PRIVATE if private else CACHE

    def swapcache(self, pfn: int) -> None:
        self._put(pfn, "flags", self._flag("swapcache") | self._flag("swapbacked"))
        self.expected[pfn] = CACHE

    def anon(self, pfn: int) -> None:
        self._put(pfn, "flags", self._flag("lru"))
        self._put(pfn, "mapping", KERNEL_ADDRESS | 1)
        self.expected[pfn] = USER

    def slab(self, pfn: int) -> None:
        """A slab page whose ``mapping`` word happens to have bit 0 set: not anonymous."""
        if "NUMBER(PG_slab)" in self.info:
            self._put(pfn, "flags", self._flag("slab"))
        else:
            self._put(pfn, "_mapcount", self._type("SLAB"), "<u4")
        self._put(pfn, "mapping", KERNEL_ADDRESS | 1)

    def offline(self, pfn: int) -> None:
        self._put(pfn, "_mapcount", self._type("OFFLINE"), "<u4")
        self.expected[pfn] = OFFLINE

    def hwpoison(self, pfn: int) -> None:
        self._put(pfn, "flags", self._flag("hwpoison"))
        self.expected[pfn] = HWPOISON

    def hugetlb(self, pfn: int, order: int) -> None:
        """A hugetlbfs page: compound head, order (and hugetlb mark) in the first tail."""
        self._put(pfn, "flags", int(self.info["NUMBER(PG_head_mask)"]))
        if "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)" in self.info:  # 6.6+: folio._flags_1
            self._put(pfn + 1, "flags", order)
            self._put(pfn, "_mapcount", self._type("HUGETLB"), "<u4")
        else:  # compound_dtor / compound_order bytes of the first tail page
            self.raw[pfn + 1, 16] = int(self.info["NUMBER(HUGETLB_PAGE_DTOR)"])
            self.raw[pfn + 1, 17] = order
        for tail in range(pfn + 1, pfn + (1 << order)):
            self._put(tail, "compound_head", 0xFFFFEA0000000000 | 1)
        self.expected[pfn : pfn + (1 << order)] = USER

    def unaccepted(self, pfn: int) -> None:
        """7.x: memory not yet accepted from the hypervisor, a MAX_ORDER block."""
        self._put(pfn, "_mapcount", self._type("UNACCEPTED"), "<u4")
        self.expected[pfn : pfn + (1 << 10)] = FREE


def every_kind(era: str) -> Pages:
    pages = Pages(era, 256)
    pages.free(8, 0)
    pages.free(16, 3)
    pages.cache(30)
    pages.cache(31, private=True)
    pages.swapcache(32)
    pages.anon(33)
    pages.slab(34)
    pages.offline(35)
    pages.hugetlb(64, 4)
    if "NUMBER(PG_hwpoison)" in ERAS[era]:
        pages.hwpoison(36)
    return pages


@pytest.mark.parametrize("era", sorted(ERAS))
def test_every_kind_at_level_31(era: str) -> None:
    pages = every_kind(era)
    n = pages.expected.shape[0]
    got = classify(rules_for(era), pages.raw, np.ones(n, bool), 0, 31, Pending())
    assert list(got) == pages.expected.tolist()


@pytest.mark.parametrize("era", sorted(ERAS))
@pytest.mark.parametrize("level", [0, 1, 2, 4, 6, 8, 16, 17, 26])
def test_each_level_excludes_only_its_kinds(era: str, level: int) -> None:
    pages = every_kind(era)
    n = pages.expected.shape[0]
    wanted = {CACHE: 2, CACHE_PRIVATE: 4, USER: 8, FREE: 16}
    expected = pages.expected.copy()
    for cls, bit in wanted.items():
        if not level & bit:
            expected[expected == cls] = KEEP
    if level & 4:  # -d 4 takes private and plain page cache alike
        expected[pages.expected == CACHE] = CACHE
    got = classify(rules_for(era), pages.raw, np.ones(n, bool), 0, level, Pending())
    assert list(got) == expected.tolist()


def test_block_carried_into_the_next_batch() -> None:
    """A free block of order 9 at pfn 512 runs past a batch ending at pfn 768."""
    pages = Pages("7", 1536)
    pages.free(512, 9)
    pages.anon(900)  # inside the free block: not examined, stays free
    pages.expected[900] = FREE
    pages.cache(1100)
    rules, pending = rules_for("7"), Pending()
    first = classify(rules, pages.raw[:769].copy(), np.ones(768, bool), 0, 31, pending)
    assert list(first) == pages.expected[:768].tolist()
    # the second batch's struct pages are rows 768..1536
    second = classify(rules, pages.raw[768:], np.ones(768, bool), 768, 31, pending)
    assert list(second) == pages.expected[768:].tolist()
    assert second[1023 - 768] == FREE and second[1024 - 768] == KEEP


@pytest.mark.parametrize("era", sorted(ERAS))
def test_block_inside_an_excluded_block_is_not_examined(era: str) -> None:
    """A stale compound head inside a free block: the free block wins, whole."""
    pages = Pages(era, 256)
    pages.hugetlb(132, 2)
    pages.free(128, 4)
    got = classify(rules_for(era), pages.raw, np.ones(256, bool), 0, 31, Pending())
    assert list(got) == pages.expected.tolist()
    assert list(got[128:144]) == [FREE] * 16


def test_unaccepted_memory_is_free_to_the_end_of_its_block() -> None:
    pages = Pages("7", 2048)
    pages.unaccepted(1024)
    got = classify(rules_for("7"), pages.raw, np.ones(2048, bool), 0, 16, Pending())
    assert list(got) == pages.expected.tolist()


def test_unexamined_pages_are_kept() -> None:
    """Pages without a valid struct page (or outside RAM) are not classified."""
    pages = every_kind("6.12")
    examine = np.ones(256, bool)
    examine[30:34] = False
    got = classify(rules_for("6.12"), pages.raw, examine, 0, 31, Pending())
    assert list(got[30:34]) == [KEEP] * 4
    assert got[8] == FREE


def test_bad_buddy_order_is_kept() -> None:
    """A buddy page whose order is past MAX_ORDER: makedumpfile warns and keeps it."""
    pages = Pages("6.12", 64)
    pages.free(8, 0)
    pages._put(8, "private", 40)
    got = classify(rules_for("6.12"), pages.raw, np.ones(64, bool), 0, 31, Pending())
    assert got[8] == KEEP


def test_rules_need_the_struct_page_entries() -> None:
    info = dict(ERAS["6.12"])
    del info["OFFSET(page.mapping)"]
    with pytest.raises(DumpFormatError, match="OFFSET\\(page.mapping\\)"):
        PageRules.from_vmcoreinfo(VmcoreInfo("".join(f"{k}={v}\n" for k, v in info.items())))


def test_page_type_encodings() -> None:
    """6.12+: the type is the top byte (low 24 bits free); before, the whole word."""
    new, old = rules_for("6.12"), rules_for("5.10")
    assert new.buddy is not None and old.buddy is not None
    assert (new.buddy.value, new.buddy.mask) == (0xF0000000, 0xFF000000)
    assert (old.buddy.value, old.buddy.mask) == (0xFFFFFF7F, 0xFFFFFFFF)
    assert new.order_in_flags1 and not old.order_in_flags1
    assert rules_for("7").off_compound_head == 8 and rules_for("7").unaccepted is not None


def random_pages(era: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Struct pages drawn from the values the rules look at: flag bits, anon/kernel
    mappings, every page type, orders (some past free_area), heads, tails."""
    info = ERAS[era]
    flags = [1 << int(v) for k, v in info.items() if k.startswith("NUMBER(PG_") and "mask" not in k]
    flags.append(int(info["NUMBER(PG_head_mask)"]))
    types = [int(v) & 0xFFFFFFFF for k, v in info.items() if k.endswith("MAPCOUNT_VALUE)")]
    raw = np.zeros((n + 1, STRUCT_PAGE), dtype=np.uint8)
    for pfn in range(n + 1):
        page = raw[pfn]
        f = 0
        for bit in rng.choice(flags, size=rng.integers(0, 3)):
            f |= int(bit)
        if rng.random() < 0.2:  # an order in the low byte (folio._flags_1 of a tail)
            f |= int(rng.integers(0, 14))
        page[0:8] = np.frombuffer(f.to_bytes(8, "little"), np.uint8)
        mapping = int(rng.choice([0, KERNEL_ADDRESS, KERNEL_ADDRESS | 1]))
        page[24:32] = np.frombuffer(mapping.to_bytes(8, "little"), np.uint8)
        if rng.random() < 0.5:
            mc = int(rng.choice(types)) | (int(rng.integers(0, 4)) if rng.random() < 0.2 else 0)
            page[48:52] = np.frombuffer(mc.to_bytes(4, "little"), np.uint8)
        page[40:48] = np.frombuffer(int(rng.integers(0, 13)).to_bytes(8, "little"), np.uint8)
        if rng.random() < 0.1:
            page[8] = 1  # a tail page
        page[16], page[17] = rng.integers(0, 4), rng.integers(0, 12)  # dtor, order (<6.3)
    return raw


@pytest.mark.parametrize("implementation", ["native"], indirect=True)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_native_matches_numpy_on_random_pages(era: str, implementation: str) -> None:
    """The C chain against the numpy one (the reference the tests above pin down), batch
    after batch with the blocks they carry over, at every dump level."""
    rules, rng = rules_for(era), np.random.default_rng(17)
    raw = random_pages(era, 4096, rng)
    examine = rng.random(4096) < 0.95
    for level in (1, 2, 4, 8, 16, 31):
        native, reference = Pending(), Pending()
        for b in range(0, 4096, 512):
            rows = raw[b : b + 513]
            got = classify(rules, rows, examine[b : b + 512], 1 << 20 | b, level, native)
            want = classify_numpy(rules, rows, examine[b : b + 512], 1 << 20 | b, level,
                                  reference)  # fmt: skip
            assert list(got) == want.tolist(), (era, level, b)
            assert (native.end_pfn, native.cls) == (reference.end_pfn, reference.cls)
