// SPDX-License-Identifier: GPL-2.0-only
// The driver control the update-img benchmarks hand to update-img.
import type { DeviceInfo, DriverControl } from '../../src/driver/types.js';

/** A driver control that answers only `info` (all update-img needs); every other call throws. */
export function infoOnlyControl(info: (minor: number) => DeviceInfo): DriverControl {
  const refuse = (): never => {
    throw new Error('not used by update-img');
  };
  return {
    setupSnapshot: refuse,
    reloadSnapshot: refuse,
    reloadIncremental: refuse,
    destroy: refuse,
    transitionToIncremental: refuse,
    transitionToSnapshot: refuse,
    reconfigure: refuse,
    getFreeMinor: refuse,
    expandCowFile: refuse,
    reconfigureAutoExpand: refuse,
    procInfo: refuse,
    info,
  };
}
