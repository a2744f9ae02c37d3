"""V3 nodes of the pack. Imported only inside ComfyUI."""

from comfy_api.latest import ComfyExtension, io

from .discovery import ClipEmbed, LoadOpenClipEncoder, PcaDecompose, TrajectorySampler


class SliderSpaceExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TrajectorySampler, ClipEmbed, LoadOpenClipEncoder, PcaDecompose]
