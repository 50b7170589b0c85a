import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = 'api:public';

/** Lets a route through without a token (health checks). */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(PUBLIC_ROUTE, true);
