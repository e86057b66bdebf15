"""BrainTumorSeg engine: brain tumour segmentation from multimodal MRI, without Qt."""

__version__ = "0.11.0"
