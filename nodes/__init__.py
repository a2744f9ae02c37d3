"""V3 nodes of the pack. Imported only inside ComfyUI."""

from comfy_api.latest import ComfyExtension, io

from .concepts.collect import SAECollectActivations, SAEListBlocks
from .concepts.steer import SAEConceptMap, SAESteer
from .concepts.train import ImportUnboxSAE, LoadSAE, SAETrain, SaveSAE
from .elrond.apply import ApplyDirections, RandomDirections
from .elrond.collect import CollectGradients
from .elrond.decompose import ConceptComplexity, Decompose
from .elrond.files import LoadDirections, SaveDirections
from .sliderspace.apply import ApplySliderBank, RandomSparseSliders
from .sliderspace.banks import ExportSliderLoRA, LoadSliderBank, SaveSliderBank
from .sliderspace.discovery import ClipEmbed, LoadOpenClipEncoder, PcaDecompose, TrajectorySampler
from .sliderspace.explore import DiversityScore, LabelBank, SliderGrid
from .sliderspace.routes import register_with_server
from .sliderspace.training import TrainSliders
from .toyworld.load import LoadToyWorld

register_with_server()  # the slider-bank widget's routes; a no-op without a running server


class SliderSpaceExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TrajectorySampler, ClipEmbed, LoadOpenClipEncoder, PcaDecompose, TrainSliders,
                SaveSliderBank, LoadSliderBank, ExportSliderLoRA, ApplySliderBank,
                RandomSparseSliders, SliderGrid, LabelBank, DiversityScore,
                SAEListBlocks, SAECollectActivations, SAETrain, SaveSAE, LoadSAE, ImportUnboxSAE,
                SAEConceptMap, SAESteer,
                CollectGradients, Decompose, ConceptComplexity, ApplyDirections, RandomDirections,
                SaveDirections, LoadDirections, LoadToyWorld]
