"""Pipeline stages that join the data pipeline to the library (each `run(config, out_dir)`)."""
