import { Module } from '@nestjs/common';
import { BuildHandler } from './build.handler.js';

/** The demo build job. Import it wherever builds should run (api, worker). */
@Module({ providers: [BuildHandler] })
export class BuildsModule {}
