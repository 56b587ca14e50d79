// SPDX-License-Identifier: GPL-2.0-only
/** Version of the dattobd-ts tools (package.json "version"). */
export const TOOLS_VERSION = '0.1.0';
