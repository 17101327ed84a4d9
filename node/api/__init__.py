"""Generated gRPC/protobuf code for bullyproof.v1 (see proto/gen.py). Do not edit."""
