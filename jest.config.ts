import type { Config } from 'jest';

const config: Config = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  testMatch: ['<rootDir>/{apps,libs,test,docs}/**/*.spec.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  moduleNameMapper: {
    '^nestjs-job-streams$': '<rootDir>/libs/job-queue/src/index.ts',
    '^nestjs-job-streams/http$': '<rootDir>/libs/job-queue/src/http/index.ts',
    '^nestjs-job-streams/terminus$': '<rootDir>/libs/job-queue/src/terminus/index.ts',
    '^nestjs-job-streams/metrics$': '<rootDir>/libs/job-queue/src/metrics/index.ts',
    '^@app/builds$': '<rootDir>/libs/builds/src/index.ts',
    '^nestjs-job-streams-client$': '<rootDir>/libs/client/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: '<rootDir>/tsconfig.json' }],
  },
  testTimeout: 30_000,
};

export default config;
