"""Readers: each turns one kind of file or array into sensor sources (rasters or time series)."""

from fusion.data.readers.arrays import from_array, from_arrays
from fusion.data.readers.band_folder import open_band_folder, open_band_folders
from fusion.data.readers.bigearthnet import open_bigearthnet_pairs
from fusion.data.readers.csv_stream import read_csv_stream
from fusion.data.readers.eurosat import EuroSatDataset, read_eurosat, scan_eurosat
from fusion.data.readers.geotiff import EUROSAT_BAND_ORDER, open_geotiff
from fusion.data.readers.presto import PrestoDataset, load_presto_arrays
from fusion.data.readers.ts_file import TsCaseDataset, case_to_sources, read_ts_file
from fusion.data.readers.xarray_source import open_xarray, open_xarray_series

__all__ = [
    "EUROSAT_BAND_ORDER",
    "EuroSatDataset",
    "PrestoDataset",
    "TsCaseDataset",
    "case_to_sources",
    "from_array",
    "from_arrays",
    "load_presto_arrays",
    "open_band_folder",
    "open_band_folders",
    "open_bigearthnet_pairs",
    "open_geotiff",
    "open_xarray",
    "open_xarray_series",
    "read_csv_stream",
    "read_eurosat",
    "read_ts_file",
    "scan_eurosat",
]
