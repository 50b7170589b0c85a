export { BuildsModule } from './builds.module.js';
export { BuildHandler, BUILD_JOB } from './build.handler.js';
export { parseBuildInput, type BuildInput } from './build-input.js';
