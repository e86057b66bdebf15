"""The BrainTumorSeg module's logic without Qt: input auto-fill, panel state, engine runner, scene output."""
