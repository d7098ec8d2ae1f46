"""An OCI runtime on the lab's core: `containerlab-magic-runtime` (cli.py) reads a bundle's
config.json (config.py) into the same ContainerSpec and start plan the lab's `run` uses.
docs/oci-runtime.md says what is supported and what is refused."""
