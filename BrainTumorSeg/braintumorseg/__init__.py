"""BrainTumorSeg engine: brain tumour segmentation from multimodal MRI, without Qt."""

__version__ = "0.10.0"
