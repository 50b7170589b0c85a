import { HttpException, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { Observable } from 'rxjs';
import type { BodyErrorRequest } from './json-body.middleware.js';

/**
 * Answers the body problem that `jsonBody` recorded (400, 413, 415). Interceptors run after
 * guards, so an unauthenticated request gets 401 before its body is judged.
 */
@Injectable()
export class BodyErrorInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const problem = context.switchToHttp().getRequest<BodyErrorRequest>().bodyError;
    if (problem) throw new HttpException(problem, problem.statusCode);
    return next.handle();
  }
}
