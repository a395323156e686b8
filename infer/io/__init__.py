"""Reading inputs and writing results: the one reader (``readers``), the chunked result
writers (``writers``) and resuming an interrupted run (``resume``)."""

from .readers import (FORMATS, Columns, InputError, InputRow, Record, detect_format, has_undecodable_bytes, iter_records,
                      read_rows, read_table)
from .resume import WrittenOutput, json_id, read_written_output, skip_written
from .writers import OUTPUT_FIELDS, ResultWriter, output_fields, results_table

__all__ = ["Columns", "FORMATS", "OUTPUT_FIELDS", "InputError", "InputRow", "Record", "ResultWriter", "WrittenOutput",
           "detect_format", "has_undecodable_bytes", "iter_records", "json_id", "output_fields", "read_rows",
           "read_table", "read_written_output", "results_table", "skip_written"]
