"""LAAC: LLM-based automated audio captioning (CED encoder -> Q-Former -> LLM), HuggingFace-native."""
