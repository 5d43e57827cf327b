// `flame embed` under torchrun or scripts/launch (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT set): rank r embeds part r of
// WORLD_SIZE into OUT/parts/part-r-of-W, on cuda:LOCAL_RANK when the device is
// "cuda"; when every rank is done, rank 0 verifies the parts and hard-links
// their shards into OUT, one store that training reads as is. Relaunching the
// same command resumes every part (and merges again). A rank that fails makes
// the launcher stop the others; one that dies closes its connections, which
// fails the others' wait at once. Without those variables: run_embed_job.
#pragma once

#include "text/embed_job.h"

namespace flame::text {

EmbedJobSummary run_embed(const EmbedJobOptions& options);

}  // namespace flame::text
