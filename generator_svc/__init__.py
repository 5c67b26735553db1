"""The generator service: LLM backends behind one interface (``generator_svc.backends``) and its gRPC adapter."""
