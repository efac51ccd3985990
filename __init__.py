"""LAAC: LLM-based automated audio captioning (CED encoder -> Q-Former -> LLM), HuggingFace-native.

Importing the package registers LAAC with the transformers Auto classes and the "audio-captioning" pipeline task,
so an installed checkout loads saved folders without `trust_remote_code` (the folders also carry their own code,
the pipeline included, for machines without the package).
"""

# pytest >= 8 imports the __init__.py of a test root that has one, under the folder's own name: a clone in a folder
# called `main` becomes a package `main` beside the installed `laac`. Under such a name this file defines nothing,
# so that each class, and its Auto and pipeline registration, exists once: in `laac`.
if __name__.rpartition(".")[2] == "laac":
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCausalLM, AutoProcessor

    from .configuration_ced import CedConfig, DashengConfig
    from .configuration_laac import LaacConfig
    from .feature_extraction_laac import LaacFeatureExtractor
    from .modeling_ced import CedForAudioClassification, CedModel, DashengModel
    from .modeling_laac import LaacForConditionalGeneration
    # importing the pipeline registers the "audio-captioning" task; FAST_DECODING: the opt-in fast decoding loop's
    # folder, for model.generate(..., custom_generate=FAST_DECODING, trust_remote_code=True)
    from .pipeline_laac import FAST_DECODING, AudioCaptioningPipeline
    from .processing_laac import LaacProcessor

    __version__ = "0.1.0"

    AutoConfig.register("laac", LaacConfig, exist_ok=True)
    AutoConfig.register("ced", CedConfig, exist_ok=True)
    AutoConfig.register("dasheng", DashengConfig, exist_ok=True)
    AutoModel.register(LaacConfig, LaacForConditionalGeneration, exist_ok=True)
    AutoModelForCausalLM.register(LaacConfig, LaacForConditionalGeneration, exist_ok=True)
    AutoModel.register(CedConfig, CedModel, exist_ok=True)
    AutoFeatureExtractor.register(LaacConfig, LaacFeatureExtractor, exist_ok=True)
    AutoProcessor.register(LaacConfig, LaacProcessor, exist_ok=True)

    __all__ = [
        "AudioCaptioningPipeline",
        "CedConfig",
        "CedForAudioClassification",
        "CedModel",
        "DashengConfig",
        "DashengModel",
        "FAST_DECODING",
        "LaacConfig",
        "LaacFeatureExtractor",
        "LaacForConditionalGeneration",
        "LaacProcessor",
    ]
