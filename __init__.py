"""SliderSpace node pack. Importable without ComfyUI; nodes register only inside ComfyUI."""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import SliderSpaceExtension

    return SliderSpaceExtension()
