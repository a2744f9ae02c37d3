"""Help in the node panel: a tooltip on every widget input, a help page per node (web/docs/<node_id>.md, which
ComfyUI's frontend shows for a custom node), and one naming scheme across the three systems."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from ..conftest import ROOT

WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SYSTEMS = {  # category → the prefix every display name in it starts with
    "SliderSpace/Sliders": "SliderSpace ",
    "SliderSpace/ELROND": "ELROND ",
    "SliderSpace/SAE concepts": "SAE ",
    "SliderSpace/ToyWorld": "",  # Load ToyWorld, named like the stock loaders
}


def _generator():
    spec = importlib.util.spec_from_file_location("make_node_docs", ROOT / "scripts" / "make_node_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def schemas(comfy) -> list:
    return _generator().pack_schemas()


def test_the_pack_has_all_its_nodes(schemas):
    assert len(schemas) >= 29, [s.node_id for s in schemas]


def test_every_widget_input_has_a_tooltip(schemas):
    widgets = [(s.node_id, i) for s in schemas for i in s.inputs
               if isinstance(i.get_io_type(), list) or i.get_io_type() in WIDGETS]
    bare = [f"{node}.{i.id}" for node, i in widgets if not i.tooltip]
    assert len(widgets) > 100
    assert bare == [], f"{len(bare)} of {len(widgets)} widget inputs have no tooltip: {bare}"


def test_every_node_has_a_help_page_that_lists_its_inputs_and_outputs(schemas):
    gen = _generator()
    for s in schemas:
        path = gen.DOCS / f"{s.node_id}.md"
        assert path.is_file(), f"no help page {path.relative_to(ROOT)}: run scripts/make_node_docs.py"
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# {s.display_name}\n"), f"{path.name}: the title is not the display name"
        hand = text.split(gen.BEGIN)[0]
        assert len(hand.split()) >= 25, f"{path.name}: the hand-written part says too little"
        for inp in s.inputs:
            assert f"**`{inp.id}`**" in text, f"{path.name} does not list input {inp.id}"
        assert gen.page(s, text) == text, (f"{path.name} is stale (an input, default or tooltip changed): run "
                                           "scripts/make_node_docs.py")


def test_help_page_images_exist():
    for page in (ROOT / "web" / "docs").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("!["):
                target = line.split("](", 1)[1].split(")", 1)[0]
                assert (page.parent / target).is_file(), f"{page.name}: missing image {target}"


def test_every_node_sits_in_one_folder_per_system(schemas):
    for s in schemas:
        assert s.category in SYSTEMS, f"{s.node_id}: category {s.category!r}"
        assert s.display_name.startswith(SYSTEMS[s.category]), f"{s.node_id}: {s.display_name!r}"


def test_no_help_page_without_a_node(schemas):
    ids = {s.node_id for s in schemas}
    pages = {p.stem for p in pathlib.Path(ROOT / "web" / "docs").glob("*.md")}
    assert pages <= ids, f"help pages for unknown nodes: {sorted(pages - ids)}"
