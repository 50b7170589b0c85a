import { Module } from '@nestjs/common';
import { ReportProcessor } from './report.processor.js';

/** The demo report processor. Import it wherever reports should run (a worker, an api that runs jobs). */
@Module({ providers: [ReportProcessor] })
export class ReportsModule {}
