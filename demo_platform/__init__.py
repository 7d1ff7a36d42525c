"""The bundled demo social network: a deterministic world with planted ground truth
(`world.build_world`), served over HTTP with JS-rendered pages (`server.DemoPlatform`), and the
training data for the demo detector (`training_data.write_training_set`).

Submodules are imported explicitly; nothing heavy is imported here.
"""
