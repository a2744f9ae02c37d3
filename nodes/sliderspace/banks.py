"""Bank file nodes: Save Slider Bank, Load Slider Bank, Export Slider LoRA (into the stock loras folder)."""

from __future__ import annotations

from comfy_api.latest import io

from ...sliderspace_core.sliderspace.bank import load_bank, parse_scales, save_bank
from ...sliderspace_core.sliderspace.export import KEY_FORMATS, bank_to_lora, lora_metadata, save_lora
from .. import sockets as S
from ..glue.family import check_bank_for_model, diffusers_names, model_architecture, model_family
from ..glue.folders import BANK_FOLDER, bank_files, file_fingerprint, full_path, save_new
from ..glue.ui import node_errors


class SaveSliderBank(io.ComfyNode):
    NAME = "SliderSpace Save Slider Bank"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSaveSliderBank", display_name=cls.NAME, category=S.CATEGORY,
            description=f"Saves a slider bank (all sliders, their directions and metadata) as one "
                        f".safetensors file in models/{BANK_FOLDER}. Never overwrites: a counter is added.",
            is_output_node=True,
            inputs=[
                S.Bank.Input("bank"),
                io.String.Input("filename_prefix", default="sliderspace_bank",
                                tooltip="File name (letters, digits, '_', '-', '.'); _00001 etc. is "
                                        "appended."),
            ],
            outputs=[io.String.Output(display_name="filename")],
        )

    @classmethod
    def execute(cls, bank, filename_prefix) -> io.NodeOutput:
        with node_errors(cls.NAME):
            return io.NodeOutput(save_new(BANK_FOLDER, filename_prefix, lambda path: save_bank(bank, path)))


class LoadSliderBank(io.ComfyNode):
    NAME = "SliderSpace Load Slider Bank"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceLoadSliderBank", display_name=cls.NAME, category=S.CATEGORY,
            description=f"Loads a slider bank saved by Save Slider Bank from models/{BANK_FOLDER} "
                        "(safetensors only; never unpickles).",
            inputs=[io.Combo.Input("file", options=bank_files(), tooltip=f"A bank in models/{BANK_FOLDER}.")],
            outputs=[S.Bank.Output(display_name="bank")],
        )

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        with node_errors(cls.NAME):
            path = full_path(BANK_FOLDER, file, "save a bank with Save Slider Bank (or copy one there) and refresh.")
            return io.NodeOutput(load_bank(path, "file"))

    @classmethod
    def fingerprint_inputs(cls, file):
        return file_fingerprint(BANK_FOLDER, file)


class ExportSliderLoRA(io.ComfyNode):
    NAME = "SliderSpace Export Slider LoRA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceExportSliderLoRA", display_name=cls.NAME, category=S.CATEGORY,
            description="Merges chosen sliders at chosen scales into ONE stock LoRA file in models/loras, "
                        "so the stock LoraLoader (and other tools) can use it. Never overwrites: a counter "
                        "is added.",
            is_output_node=True,
            inputs=[
                S.Bank.Input("bank"),
                io.String.Input("scales", default="0:1.0",
                                tooltip="'index:scale' pairs separated by commas, e.g. '0:1.5, 3:-2'."),
                io.Combo.Input("key_format", options=list(KEY_FORMATS), default="comfy",
                               tooltip="comfy: generic ComfyUI keys (any model). kohya: lora_unet_ keys "
                                       "(A1111/Forge/sd-scripts style). peft: diffusers module names "
                                       "(diffusers' load_lora_weights)."),
                io.String.Input("filename", default="sliderspace_slider",
                                tooltip="File name in models/loras; _00001 etc. is appended."),
                io.Model.Input("model", optional=True,
                               tooltip="Only needed for kohya/peft names when the bank does not record its "
                                       "model's architecture; also checks that the bank fits this model."),
            ],
            outputs=[io.String.Output(display_name="lora_name")],
        )

    @classmethod
    def execute(cls, bank, scales, key_format, filename, model=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            chosen = parse_scales(scales, len(bank))
            family, architecture = bank.meta.family, bank.meta.architecture
            if model is not None:
                check_bank_for_model(bank, model)
                family, architecture = model_family(model), model_architecture(model)
            names = diffusers_names(family, architecture) if architecture else None
            tensors = bank_to_lora(bank, chosen, key_format, family, names)
            meta = lora_metadata(bank, chosen, key_format)
            name = save_new("loras", filename, lambda path: save_lora(tensors, path, meta), "filename")
        return io.NodeOutput(name)


__all__ = ["SaveSliderBank", "LoadSliderBank", "ExportSliderLoRA"]
