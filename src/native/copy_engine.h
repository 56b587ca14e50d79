/* SPDX-License-Identifier: GPL-2.0-only */
/* update-img's native copy engine (copy_engine.cc). */
#ifndef DATTOBD_COPY_ENGINE_H
#define DATTOBD_COPY_ENGINE_H

#include <napi.h>

/* Adds copyWindows and COPY_PROGRESS to the binding's exports. */
void InitCopyEngine(Napi::Env env, Napi::Object exports);

#endif
