"""atlas: a distributed batch atlas of preferred images for every unit of an image network.

DGN-AM (Nguyen et al. 2016) and PPGN-h (Nguyen et al. 2017) synthesize, for each unit of the selected
layers, the images it responds to most, by optimizing in the code space of a generator network with a
learned prior on the code. Ray actors do the work; results land in Parquet; a Streamlit viewer and
DuckDB SQL browse them.

Usage::

    from atlas.config import load_config
    from atlas.pipeline import run_atlas
    summary = run_atlas(load_config("configs/demo.yaml"))
"""

__version__ = "0.1.0"
