#!/usr/bin/env node
// SPDX-License-Identifier: GPL-2.0-only
import { main } from './update-img-main.js';

process.exitCode = await main(process.argv.slice(2), { env: process.env });
