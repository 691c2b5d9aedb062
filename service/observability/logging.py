"""JSON-lines logs through structlog, configured once by the composition root.

One event name per line (`round_closed`, `push_sent`) with bound context (`chat_id`, `site_id`,
`partition`, `offset`). Library loggers (aiokafka, aiohttp) go through the same renderer so
the output stays one JSON object per line.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries never log below INFO, not even at DEBUG: their debug lines carry payloads (aiokafka
    # logs every produced record's key and value, so a dead-lettered record's visitor e-mail or token).
    root.setLevel(logging.WARNING if level != "DEBUG" else logging.INFO)
