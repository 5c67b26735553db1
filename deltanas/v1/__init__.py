"""Generated from protos/deltanas/v1 by `python -m deltanas.protogen`; do not edit."""
