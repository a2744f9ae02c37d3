"""ELROND Save Directions / ELROND Load Directions (models/elrond, one safetensors file each)."""

from __future__ import annotations

from comfy_api.latest import io

from ...sliderspace_core.common.safefile import SUFFIX
from ...sliderspace_core.elrond.directions import load_directions, save_directions
from .. import sockets as S
from ..glue.folders import ELROND_FOLDER, file_fingerprint, full_path, listed, save_new
from ..glue.ui import node_errors


class SaveDirections(io.ComfyNode):
    NAME = "ELROND Save Directions"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDSaveDirections", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description=f"Saves directions as one .safetensors file in models/{ELROND_FOLDER} (never overwrites: a "
                        "counter is added).", is_output_node=True,
            inputs=[S.Directions.Input("directions"),
                    io.String.Input("filename_prefix", default="elrond_directions",
                                    tooltip="File name in models/elrond; _00001 etc. is appended, never overwriting.")],
            outputs=[io.String.Output(display_name="filename")],
        )

    @classmethod
    def execute(cls, directions, filename_prefix) -> io.NodeOutput:
        with node_errors(cls.NAME):
            name = save_new(ELROND_FOLDER, filename_prefix, lambda path: save_directions(directions, path))
        return io.NodeOutput(name)


class LoadDirections(io.ComfyNode):
    NAME = "ELROND Load Directions"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDLoadDirections", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description=f"Loads directions saved by ELROND Save Directions from models/{ELROND_FOLDER} "
                        "(safetensors only; never unpickles).",
            inputs=[io.Combo.Input("file", options=listed(ELROND_FOLDER, SUFFIX),
                                   tooltip="A directions file in models/elrond (press R after saving a new one).")],
            outputs=[S.Directions.Output(display_name="directions")],
        )

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        with node_errors(cls.NAME):
            path = full_path(ELROND_FOLDER, file, "save directions with ELROND Save Directions and refresh.")
            return io.NodeOutput(load_directions(path, "file"))

    @classmethod
    def fingerprint_inputs(cls, file):
        return file_fingerprint(ELROND_FOLDER, file)


__all__ = ["SaveDirections", "LoadDirections"]
