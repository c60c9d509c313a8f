"""Sample documents and job helpers shared by the Datasets tests."""

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.\nBerlin is the capital of Germany.",
    "A sparse autoencoder learns features.",
    "Once upon a time there was a little girl named Lily.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The sun is a star. Rome is in Italy.",
    "Neural networks compute with matrices; transformers use attention over tokens.",
]
TOPICS = ["Animals", "Geography", "Technology", "Stories", "Science", "Geography", "Technology"]


def wait_ok(studio, job, timeout=60):
    rec = studio.jobs.wait(job.id, timeout)
    assert rec.status == "completed", (rec.status, rec.error, rec.traceback)
    return rec


def wait_failed(studio, job, timeout=60):
    rec = studio.jobs.wait(job.id, timeout)
    assert rec.status == "failed", (rec.status, rec.result)
    return rec
